"""Turn Azure SDK exceptions into one-line kloset_sdk errors without secrets.

Azure messages can quote request URLs, whose query may carry a SAS
signature, so raw messages are never passed on: a short reason is built from
the status and error code, and any free text kept is scrubbed.
"""

from __future__ import annotations

import re

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
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


class TokenError(Exception):
    """A Microsoft Entra ID token could not be obtained; the message is a short reason.

    Deliberately not an AzureError: the storage pipeline would retry it with backoff.
    """


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


def _http_reason(exc: HttpResponseError) -> str:
    raw = getattr(exc, "error_code", None) or ""
    code = str(getattr(raw, "value", raw))  # a StorageErrorCode enum or a plain string
    status = exc.status_code
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
    if isinstance(exc, ConnectorError):
        return exc
    where = f" {endpoint}" if endpoint else " the Azure endpoint"
    if isinstance(exc, TokenError):
        return PermissionDeniedError(f"{what}: cannot get a Microsoft Entra ID token: {exc}")
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
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
