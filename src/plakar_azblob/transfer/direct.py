"""Blob reads and listings through azure-core's pipeline, on a slim urllib3 transport.

A read through the Azure SDK's objects (``download_blob().readall()``) costs
about 2 ms of CPU in Python, several times what the service takes to answer
a small read; most of it is requests and the SDK's downloader, not
azure-core's policies. The reads that matter most (the source's Opens, the
store's Gets: most requests of a backup or a restore) and the listings are
made here instead: an ``HttpRequest`` of our own run through an azure-core
``Pipeline`` of the policies the SDK's clients run, on
:class:`~plakar_azblob.transfer.http_transport.Urllib3Transport`:

- a request id (``x-ms-client-request-id``, the same for every try:
  azure-core's ``RequestIdPolicy``) and the SDK clients' user agent
  (``UserAgentPolicy``, built as the SDK builds it); proxies: the pipeline's
  own (``ProxyPolicy``), else the environment's, which the transport takes as
  requests takes them for the SDK's clients;
- the retries of every request of the connectors (:class:`AzblobRetry`: 408,
  429 and 5xx honouring ``Retry-After``, broken connections);
- the API version and date, then the SDK client's own credential policy
  object (shared key, SAS credential, or Microsoft Entra ID bearer tokens:
  one token cache for both paths).

Error answers raise the exceptions the SDK raises for them
(:func:`~plakar_azblob.clients.errors.response_error`), reported alike. The SDK's
objects are used instead only when this path cannot be built at all (an SDK
whose client no longer has the attributes used here): every such read is
counted in :data:`FALLBACKS` and logged at debug level (``KLOSET_LOG=debug``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from azure.core.exceptions import AzureError, ResourceModifiedError
from azure.core.pipeline import Pipeline, PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HTTPPolicy,
    ProxyPolicy,
    RequestIdPolicy,
    SansIOHTTPPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob import ContainerClient

from ..clients import factory
from ..clients.config import parse_config
from ..clients.errors import ERROR_BODY_LIMIT, UnexpectedAnswer, response_error
from ..clients.retry import CONNECTION_TIMEOUT, MIN_BODY_RATE, READ_TIMEOUT, AzblobRetry
from .http_transport import BodyTimeout, Urllib3Response, Urllib3Transport

log = logging.getLogger(__name__)

# Reads and listings made through the Azure SDK's objects because the direct path
# could not be built, by reason (see fallback()).
FALLBACKS: Counter[str] = Counter()
_fallback_lock = threading.Lock()


def fallback(reason: str) -> None:
    """Count (and log at debug level) one request made through the SDK's objects
    instead of the direct path."""
    with _fallback_lock:
        FALLBACKS[reason] += 1
        count = FALLBACKS[reason]
    log.debug("request made through the Azure SDK instead of the direct path: %s "
              "(%d so far)", reason, count)


class BrokenRead(OSError):
    """A streamed read stopped before the end of the blob (the connection broke, or
    the body was too slow: ``timed_out``)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Streamed:
    pieces: Iterator[bytes]
    etag: str
    size: int  # where the stream ends: the blob's size, or the end of the range


@dataclass(frozen=True)
class Answer:
    data: bytes
    etag: str
    size: int | None  # the whole blob's size, when the answer says it


@dataclass(frozen=True)
class Page:
    """One List Blobs answer (200), its body read."""

    body: bytes
    status: int
    content_type: str
    # Its .wellformed verdict to come, when the listing has it checked as it arrives.
    checked: Future[bytes] | None = None


class _StorageHeaders(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """The API version and the date the shared key signs, at each try."""

    def __init__(self, api_version: str) -> None:
        self._version = api_version

    def on_request(self, request: PipelineRequest[Any]) -> None:
        headers = request.http_request.headers
        headers["x-ms-version"] = self._version
        headers["x-ms-date"] = formatdate(usegmt=True)


class _SharedBearer(HTTPPolicy):  # type: ignore[type-arg]
    """The SDK client's bearer token policy, run in this pipeline too.

    An ``HTTPPolicy`` object is linked to the next policy of one pipeline, so
    this one is driven through its public hooks, as its own ``send`` drives
    them: ``on_request`` (the cached token, or a new one), and on a 401 with
    ``WWW-Authenticate``, ``on_challenge`` then one more try. Both pipelines
    share its token cache."""

    def __init__(self, policy: BearerTokenCredentialPolicy[Any, Any]) -> None:
        super().__init__()
        self._policy = policy

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        self._policy.on_request(request)
        response = self.next.send(request)
        http = response.http_response
        if http.status_code == 401 and "WWW-Authenticate" in http.headers and \
                self._policy.on_challenge(request, response):
            http.close()
            response = self.next.send(request)
        return response


def _credential(policy: Any) -> Any:
    """``policy`` (the SDK client's credential policy) as a policy of another pipeline;
    None if it cannot be (a kind this module does not know)."""
    if isinstance(policy, SansIOHTTPPolicy):  # shared key, SAS credential: stateless
        return policy
    if isinstance(policy, BearerTokenCredentialPolicy):
        return _SharedBearer(policy)
    return None


_MISSING = object()


class DirectReader:
    """GETs of the blobs and listings of one container (see the module's docstring)."""

    def __init__(self, url: str, pipeline: Pipeline[Any, Any], transport: Urllib3Transport) -> None:
        parts = urlsplit(url)
        self._base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self._query = f"?{parts.query}" if parts.query else ""  # the SAS, if any
        self._pipeline = pipeline
        self._transport = transport

    @classmethod
    def for_client(cls, client: ContainerClient, pool_size: int) -> DirectReader | None:
        """A reader for ``client``'s container with its credential policy, or None (logged,
        and each read then counted by :func:`fallback`) if it has none this module
        can use: an SDK that changed."""
        policy = getattr(client, "_credential_policy", _MISSING)
        credential = None if policy is None else _credential(policy)
        if policy is _MISSING or (policy is not None and credential is None):
            log.debug("no direct path: the Azure SDK client's credential policy is %s",
                      "missing" if policy is _MISSING else type(policy).__name__)
            return None
        transport = Urllib3Transport(pool_size=pool_size, connection_timeout=CONNECTION_TIMEOUT,
                                     read_timeout=READ_TIMEOUT, min_rate=MIN_BODY_RATE)
        policies: list[Any] = [RequestIdPolicy(), UserAgentPolicy(**factory.user_agent_options()),
                               ProxyPolicy(), AzblobRetry(), _StorageHeaders(client.api_version)]
        if credential is not None:
            policies.append(credential)
        return cls(client.url, Pipeline(transport, policies=policies), transport)

    def read(self, name: str, offset: int, length: int | None, etag: str | None = None,
             shorter: bool = False) -> Answer:
        """``length`` bytes of blob ``name`` from ``offset`` (None: the whole blob), if it
        still has ``etag`` (when given); with ``shorter``, fewer bytes when the blob ends
        first. Raises the SDK's exceptions (``ResourceNotFoundError``,
        ``ResourceModifiedError``...), ``EOFError`` for fewer bytes than asked."""
        headers = {}
        if length is not None:
            headers["x-ms-range"] = f"bytes={offset}-{offset + length - 1}"
        if etag is not None:
            headers["If-Match"] = etag
        response = self._get(self._blob_url(name), headers, stream=False)
        _expect(response, 206 if length is not None else 200, "the blob's content")
        data = response.body()
        got = response.headers.get("ETag", "")
        _check_etag(etag, got)
        if length is not None and (len(data) > length or (len(data) < length and not shorter)):
            raise EOFError(f"got {len(data)} bytes instead of {length}")
        return Answer(data, got, _total(response.headers.get("Content-Range"), len(data)))

    def stream(self, name: str, offset: int, etag: str | None, chunk: int,
               length: int | None = None) -> Streamed:
        """Blob ``name`` from ``offset`` to its end (or ``length`` bytes), as it arrives,
        in pieces of at most ``chunk`` bytes, if it still has ``etag`` (when given). One
        request streamed (as the official package reads a blob): the emulator (Azurite)
        serves it about four times as fast as ranged requests, and hashes nothing. A
        connection that breaks, or a body too slow, raises :class:`BrokenRead` from the
        iterator after the bytes that did arrive; an error answer raises the SDK's
        exception here."""
        headers = {"If-Match": etag} if etag is not None else {}
        if length is not None:
            headers["x-ms-range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            headers["x-ms-range"] = f"bytes={offset}-"
        response = self._get(self._blob_url(name), headers, stream=True)
        ranged = bool(offset) or length is not None
        _expect(response, 206 if ranged else 200, "the blob's content")
        got = response.headers.get("ETag", "")
        size = response.headers.get("Content-Length", "")
        try:
            _check_etag(etag, got)
            if not size.isdigit():
                raise UnexpectedAnswer(message="the service's answer to a read has no "
                                       "Content-Length", response=response)
        except AzureError:
            response.close()
            raise
        return Streamed(_pieces(response, chunk), got, offset + int(size))

    def list_page(self, prefix: str | None, marker: str | None, page_size: int | None = None,
                  metadata: bool = True, start_from: str | None = None) -> Page:
        """One List Blobs answer (with ``metadata``) of the blobs starting with
        ``prefix``, from ``marker`` or from the first name not below ``start_from``:
        a 200, its body not yet checked (see :func:`.listing.page_root`); the SDK's
        exception for an error."""
        query = "restype=container&comp=list" + ("&include=metadata" if metadata else "")
        for key, value in (("prefix", prefix), ("marker", marker), ("startFrom", start_from),
                           ("maxresults", page_size and str(page_size))):
            if value:
                query += f"&{key}={quote(value, safe='')}"
        sas = "&" + self._query[1:] if self._query else ""
        response = self._get(f"{self._base}?{query}{sas}", {}, stream=False)
        _expect(response, 200, "a blob listing")
        return Page(response.body(), response.status_code, response.content_type or "")

    def _blob_url(self, name: str) -> str:
        return f"{self._base}/{quote(name, safe='~/')}{self._query}"

    def _get(self, url: str, headers: dict[str, str], stream: bool) -> Urllib3Response:
        # A random request id (RequestIdPolicy's own, uuid1, asks libuuid's uuidd
        # daemon through a socket: 3 system calls per request).
        response = self._pipeline.run(HttpRequest("GET", url, headers=headers),
                                      stream=stream, request_id=str(uuid.uuid4())).http_response
        assert isinstance(response, Urllib3Response)
        return response

    def close(self) -> None:
        self._transport.close()


def _expect(response: Urllib3Response, status: int, what: str) -> None:
    """Raise unless ``response`` has ``status``: the SDK's exception for an error answer,
    :class:`UnexpectedAnswer` for any other."""
    if response.status_code == status:
        return
    if response.status_code >= 300:
        raise response_error(response, _error_body(response))
    response.close()
    raise UnexpectedAnswer(
        message=f"the service's answer is not {what}: HTTP {response.status_code}, "
                f"Content-Type {response.content_type or 'none'}", response=response)


def _error_body(response: Urllib3Response) -> bytes:
    """The body of an error answer, for its code and message: b"" if it is large
    (never an error's) or breaks off (the status is the error)."""
    if response.is_stream_consumed:
        return response.body()
    length = response.headers.get("Content-Length") or ""
    if length.isdigit() and int(length) <= ERROR_BODY_LIMIT:
        try:
            return response.read()
        except AzureError:
            return b""
    response.close()
    return b""


def _check_etag(expected: str | None, got: str) -> None:
    # Listings give ETags bare, headers quoted.
    if expected is not None and got.strip('"') != expected.strip('"'):
        raise ResourceModifiedError(message="the blob's ETag is not the one asked for")


def _pieces(response: Urllib3Response, chunk: int) -> Iterator[bytes]:
    try:
        while True:
            try:
                piece = response.read_piece(chunk)
            except BodyTimeout as exc:
                raise BrokenRead(str(exc.message), timed_out=True) from None
            except (AzureError, OSError) as exc:
                raise BrokenRead(str(exc)) from None
            if not piece:
                return
            yield piece
    finally:
        response.close()


def _total(content_range: str | None, length: int) -> int | None:
    """The blob's size from ``Content-Range: bytes a-b/TOTAL`` (or the body's length)."""
    if content_range is None:
        return length
    _, _, total = content_range.rpartition("/")
    return int(total) if total.isdigit() else None


def preload() -> None:
    """Set up once, for the fork server, what a connector's first reads would: what
    the SDK loads at its first request (:func:`.factory.preload`), then a client and
    a direct reader for a made-up account (no request is made): the configuration's
    regular expressions compiled, the SDK's and this path's pipeline classes set up."""
    factory.preload()
    key = "AAAA" * 11
    cfg = parse_config({"location": "azblob://warm-up",
                        "connection_string": f"AccountName=warmup;AccountKey={key};"
                                             "BlobEndpoint=http://127.0.0.1:9/warmup;"},
                       "importer")
    client = factory.container_client(cfg)
    DirectReader.for_client(client, factory.pool_size(cfg))
    client.close()
