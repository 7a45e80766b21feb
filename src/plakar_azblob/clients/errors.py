"""Turn Azure SDK exceptions into one-line kloset_sdk errors without secrets.

Azure messages can quote request URLs, whose query may carry a SAS
signature, so raw messages are never passed on: a short reason is built from
the status and error code, and any free text kept is scrubbed.

The direct reads (:mod:`plakar_azblob.transfer.direct`) get their error answers from
azure-core's pipeline, not from the SDK's generated operations:
:func:`response_error` builds from them the exception the SDK would raise
(same type, status and error code), so that they are reported alike.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    ServiceRequestError,
    ServiceResponseError,
)

from kloset_sdk import (
    AlreadyExistsError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
)

# Short reasons for the error codes users meet most.
_REASONS = {
    "BlobNotFound": "does not exist",
    "ContainerNotFound": "the container does not exist",
    "ResourceNotFound": "does not exist",
    "BlobAlreadyExists": "already exists",
    "ContainerAlreadyExists": "the container already exists",
    "ContainerBeingDeleted": "the container is being deleted",
    "AuthenticationFailed": "authentication failed (check the account key or SAS token)",
    "AuthorizationFailure": "the credentials are not allowed to do this",
    "AuthorizationPermissionMismatch": "the credentials lack the permission for this operation",
    "AuthorizationResourceTypeMismatch": "the SAS does not cover this kind of resource",
    "AuthorizationServiceMismatch": "the SAS does not cover the blob service",
    "AuthorizationSourceIPMismatch": "the SAS does not allow this client's IP address",
    "AuthorizationProtocolMismatch": "the SAS does not allow this protocol (http/https)",
    "NoAuthenticationInformation": "the request was anonymous but the container is not public",
    "PublicAccessNotPermitted": "public access is not permitted on this storage account",
    "InvalidRange": "the requested range is not satisfiable",
    "ServerBusy": "the storage service is busy",
    "OperationTimedOut": "the operation timed out",
    "InternalError": "the storage service had an internal error",
    "AccountIsDisabled": "the storage account is disabled",
    "InvalidResourceName": "invalid resource name",
    "InvalidBlobTier": "invalid access tier for this blob",
    "BlobTierInadequateForContentLength": "the access tier does not allow this blob size",
}

_CONNECT_REASONS = (
    ("connection refused", "connection refused"),
    ("name or service not known", "host name not found"),
    ("nodename nor servname", "host name not found"),
    ("temporary failure in name resolution", "host name not found"),
    ("getaddrinfo failed", "host name not found"),
    ("no address associated", "host name not found"),
    ("certificate_verify_failed", "TLS certificate verification failed"),
    ("wrong version number", "TLS handshake failed (is the endpoint http rather than https?)"),
    ("ssl", "TLS error"),
    ("too slow", "the answer was too slow (a stalled or dripping body)"),
    ("timed out", "connection timed out"),
    ("timeout", "connection timed out"),
    ("network is unreachable", "network is unreachable"),
    ("no route to host", "no route to host"),
    ("connection reset", "connection reset by peer"),
    ("connection aborted", "connection aborted"),
    ("remotedisconnected", "connection closed by the service"),
)

_URL_QUERY = re.compile(r"(https?://[^\s?'\"<>]*)\?[^\s'\"<>]*", re.IGNORECASE)
_SECRET_PARAM = re.compile(
    r"((?:sig|signature|accountkey|sharedaccesssignature|client_secret|password)=)[^&;\s'\"]*",
    re.IGNORECASE)
_PATH_QUERY = re.compile(r"(/[^\s?'\"<>]*)\?[^\s'\"<>]*")


# Error codes by the exception the Azure SDK raises for them (as its response
# handlers map them, for statuses its generated operations do not map first).
_CODE_ERRORS: dict[str, type[HttpResponseError]] = {
    **dict.fromkeys(("ConditionNotMet", "BlobOverwritten"), ResourceModifiedError),
    **dict.fromkeys(("InvalidAuthenticationInfo", "AuthenticationFailed"),
                    ClientAuthenticationError),
    **dict.fromkeys(("ResourceNotFound", "CannotVerifyCopySource", "BlobNotFound",
                     "QueueNotFound", "ContainerNotFound", "ParentNotFound", "ShareNotFound"),
                    ResourceNotFoundError),
    **dict.fromkeys(("AccountAlreadyExists", "AccountBeingCreated", "ResourceAlreadyExists",
                     "ResourceTypeMismatch", "BlobAlreadyExists", "QueueAlreadyExists",
                     "ContainerAlreadyExists", "ContainerBeingDeleted", "QueueBeingDeleted",
                     "ShareAlreadyExists", "ShareBeingDeleted"), ResourceExistsError),
}
# Statuses the generated operations map before looking at the code.
_STATUS_ERRORS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError, 404: ResourceNotFoundError, 409: ResourceExistsError,
    304: ResourceNotModifiedError}
ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error answer's body read for its code and message


class UnexpectedAnswer(HttpResponseError):
    """A successful status with an answer that is not the one asked for (a listing
    that is not XML, a gateway's HTML page...). Its message is the whole reason."""


def response_error(response: Any, body: bytes) -> HttpResponseError:
    """The exception the Azure SDK raises for the error answer ``response`` (an
    azure-core response) whose body is ``body``: same type, status, error code and
    first line of message (the service's ``<Message>``, or the status's reason)."""
    code = response.headers.get("x-ms-error-code") or ""
    message = ""
    if body.lstrip().startswith(b"<"):
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            root = None
        if root is not None:
            code = root.findtext("Code") or code
            message = root.findtext("Message") or ""
    cls = _STATUS_ERRORS.get(response.status_code) or _CODE_ERRORS.get(code, HttpResponseError)
    text = message or response.reason or f"HTTP {response.status_code}"
    error = cls(message=f"{text}\nErrorCode:{code}" if code else text, response=response)
    error.error_code = code or None  # type: ignore[attr-defined]  # as the SDK sets it
    return error


class TokenError(PermissionDeniedError):
    """A Microsoft Entra ID token could not be obtained.

    Deliberately not an AzureError: the storage pipeline would retry it with
    backoff. A kloset_sdk error, so that wherever it ends up its message is
    the one line ``cannot get a Microsoft Entra ID token: <reason>``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot get a Microsoft Entra ID token: {reason}")
        self.reason = reason


def scrub(text: str, limit: int = 200) -> str:
    """First line of ``text`` with URL queries and secret-looking values removed."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _URL_QUERY.sub(r"\1", line)
    line = _PATH_QUERY.sub(r"\1", line)
    line = _SECRET_PARAM.sub(r"\1REDACTED", line)
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and those it wraps (cause, context, Azure's inner_exception)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        inner = getattr(e, "inner_exception", None)
        todo += [e.__cause__, e.__context__, inner if isinstance(inner, BaseException) else None]
    return seen


def _connect_reason(exc: BaseException) -> str:
    text = " ".join(f"{type(e).__name__} {e}" for e in _chain(exc)).lower()
    for needle, reason in _CONNECT_REASONS:
        if needle in text:
            return reason
    return "network error"


def _request(exc: HttpResponseError) -> Any:
    """The request that got the error response, when the exception carries it."""
    return getattr(getattr(exc, "response", None), "request", None)


def _sas_time(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _credential_reason(exc: HttpResponseError, code: str) -> str | None:
    """Why a 401/403 happened, when the request's own credential tells it.

    A SAS whose ``se`` (expiry) is past or ``st`` (start) is to come is named
    as such, whatever the code (Azure says AuthenticationFailed, Azurite
    AuthorizationFailure); a refused signature says which credential it was.
    Only the SAS's times are quoted, never its signature.
    """
    request = _request(exc)
    if request is None:
        return None
    query = parse_qs(urlsplit(str(getattr(request, "url", ""))).query)
    now = datetime.now(timezone.utc)
    if "sig" in query:
        expiry = _sas_time(query.get("se", [""])[0])
        if expiry is not None and expiry <= now:
            return (f"the SAS token expired at {expiry.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                    "(make a new one)")
        start = _sas_time(query.get("st", [""])[0])
        if start is not None and start > now:
            return (f"the SAS token is not valid before "
                    f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        if code == "AuthenticationFailed":
            return "the SAS token was refused: its signature does not match"
        if code == "AuthorizationFailure":
            return ("the SAS token was refused (wrong signature, or not allowed by the "
                    "account's network rules)")
        return None
    auth = str((getattr(request, "headers", None) or {}).get("Authorization", ""))
    if auth.startswith("SharedKey"):
        if code == "AuthenticationFailed":
            return "authentication failed: the account key is wrong"
        if code == "AuthorizationFailure":
            return ("the account key was refused (wrong key, or not allowed by the "
                    "account's network rules)")
    return None


def error_code(exc: HttpResponseError) -> str:
    """The service's error code (``ContainerNotFound``...), or "" when it gave none."""
    raw = getattr(exc, "error_code", None) or ""
    return str(getattr(raw, "value", raw))  # a StorageErrorCode enum or a plain string


def _http_reason(exc: HttpResponseError) -> str:
    code = error_code(exc)
    status = exc.status_code
    reason = _credential_reason(exc, code) if status in (401, 403) else None
    if reason is None:
        reason = _REASONS.get(code) if code else None
    if reason is None:
        if status == 404:
            reason = "does not exist"
        elif status == 403:
            reason = "access denied"
        else:
            reason = scrub(exc.message or "") or (exc.reason or "request failed")
    detail = ", ".join(x for x in (code, f"HTTP {status}" if status else "") if x)
    return f"{reason} ({detail})" if detail else reason


def translate(exc: BaseException, what: str, *, endpoint: str | None = None) -> ConnectorError:
    """A kloset_sdk error for ``exc``, its message ``f"{what}: <short reason>"``.

    ``endpoint`` (the account URL, no secret) is named when it cannot be reached.
    """
    if isinstance(exc, TokenError):
        return PermissionDeniedError(f"{what}: {exc}")
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, UnexpectedAnswer):
        return ConnectorError(f"{what}: {scrub(exc.message)}")
    where = f" {endpoint}" if endpoint else " the Azure endpoint"
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        if any(type(e).__name__ == "AzureSigningError" for e in _chain(exc)):
            # The shared-key policy could not sign the request (parse_config
            # checks keys are base64, so this is unexpected): never quote it.
            return PermissionDeniedError(f"{what}: cannot sign the request with the "
                                         "account key (is it the base64 key of the account?)")
        # No HTTP status: azure.identity could not obtain a token.
        return PermissionDeniedError(f"{what}: cannot get a Microsoft Entra ID token: "
                                     f"{token_reason(exc)}")
    if isinstance(exc, HttpResponseError):
        reason = _http_reason(exc)
        if isinstance(exc, ResourceNotFoundError) or exc.status_code == 404:
            return NotFoundError(f"{what}: {reason}")
        if isinstance(exc, ResourceExistsError):
            return AlreadyExistsError(f"{what}: {reason}")
        if isinstance(exc, ClientAuthenticationError) or exc.status_code in (401, 403):
            return PermissionDeniedError(f"{what}: {reason}")
        return ConnectorError(f"{what}: {reason}")
    if isinstance(exc, ServiceRequestError):
        return ConnectorError(f"{what}: cannot reach{where}: {_connect_reason(exc)}")
    if isinstance(exc, ServiceResponseError):
        return ConnectorError(f"{what}: the connection to{where} failed: "
                              f"{_connect_reason(exc)}")
    if isinstance(exc, AzureError):
        return ConnectorError(f"{what}: {scrub(exc.message or type(exc).__name__)}")
    text = scrub(str(exc))
    return ConnectorError(f"{what}: {type(exc).__name__}" + (f": {text}" if text else ""))


def token_reason(exc: ClientAuthenticationError) -> str:
    """A one-line reason for an azure.identity failure."""
    text = str(exc.message or "")
    if "DefaultAzureCredential failed" in text:
        return ("no credential available (set tenant_id, client_id and client_secret, "
                "use a managed identity, or sign in with the Azure CLI)")
    if isinstance(exc.__cause__, ServiceRequestError) or "connection" in text.lower():
        return f"cannot reach the Microsoft Entra ID service: {_connect_reason(exc)}"
    return scrub(text) or "authentication failed"
