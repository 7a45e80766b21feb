"""Blob reads made directly with urllib3, for the requests that matter most.

Each request through the Azure SDK costs about 1.5 ms of CPU in Python
(its pipeline of policies, the generated operation, the downloader, then
requests on top of urllib3), several times what the service takes to answer
a small read. Reads of content (the source's Opens, the store's Gets: most
requests of a backup or a restore) are made here instead: one GET of a byte
range, signed by the very credential policy of the SDK client (shared key),
or carrying its SAS, with the SDK's API version, through a urllib3 pool of
our own (about 0.2 ms of CPU).

Listing pages are fetched the same way (see :mod:`plakar_azblob.listing`).
Only the expected answer is taken: 200 or 206 with exactly the bytes asked
for. Anything else (an error status, a changed ETag, a broken connection)
returns None, and the caller makes the same request through the SDK, which
retries as configured and raises the error the user sees. Microsoft Entra
ID and proxies are left to the SDK (:meth:`DirectReader.for_client` returns
None for them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import urllib3
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.blob import ContainerClient

from . import __version__

CONNECT_TIMEOUT = 10.0  # seconds, as the SDK client's
READ_TIMEOUT = 120.0


class BrokenRead(OSError):
    """A streamed read stopped before the end of the blob (the connection broke)."""


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


class DirectReader:
    """GETs of blob ranges of one container, outside the Azure SDK's pipeline."""

    def __init__(self, base: str, query: str, api_version: str, policy: Any,
                 pool_size: int) -> None:
        self._base = base  # https://host/container (no query)
        self._query = query  # "?sas..." or ""
        self._version = api_version
        self._policy = policy  # the SDK's shared key policy, or None (SAS, anonymous)
        scheme = urlsplit(base).scheme
        tls: dict[str, Any] = {}
        if scheme == "https":
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": _ca_bundle()}
        self._pool = urllib3.PoolManager(
            num_pools=2, maxsize=pool_size, block=False, retries=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT), **tls)
        self._agent = f"plakar-azblob/{__version__}"

    @classmethod
    def for_client(cls, client: ContainerClient, pool_size: int) -> DirectReader | None:
        """A reader for ``client``'s container, or None where reads must go through
        the SDK (Microsoft Entra ID, a proxy, an SDK without the expected attributes)."""
        policy = getattr(client, "_credential_policy", _MISSING)
        query = getattr(client, "_query_str", None)
        if policy is _MISSING or not isinstance(query, str):
            return None
        if policy is not None and type(policy).__name__ != "SharedKeyCredentialPolicy":
            return None  # a token credential: its refresh logic stays the SDK's
        endpoint = urlsplit(client.primary_endpoint)
        if endpoint.scheme not in ("http", "https") or _proxied(client.primary_endpoint):
            return None
        base = urlunsplit((endpoint.scheme, endpoint.netloc, endpoint.path.rstrip("/"), "", ""))
        return cls(base, query, client.api_version, policy, pool_size)

    def read(self, name: str, offset: int, length: int | None, etag: str | None = None,
             shorter: bool = False) -> Answer | None:
        """``length`` bytes of blob ``name`` from ``offset`` (None: the whole blob),
        if it still has ``etag`` (when given); with ``shorter``, fewer bytes when
        the blob ends first. None for anything unexpected."""
        headers = {}
        if length is not None:
            headers["x-ms-range"] = f"bytes={offset}-{offset + length - 1}"
        if etag is not None:
            headers["If-Match"] = etag
        response = self._get(f"{self._base}/{quote(name, safe='~/')}{self._query}", headers)
        if response is None:
            return None
        complete = False
        try:
            if response.status != (206 if length is not None else 200):
                return None
            data = response.read(decode_content=False)
            complete = True
            got = response.headers.get("ETag", "")
            if length is not None and (len(data) > length
                                       or (len(data) < length and not shorter)):
                return None
            # Listings give ETags bare, headers quoted.
            if etag is not None and got.strip('"') != etag.strip('"'):
                return None
            return Answer(data, got, _total(response.headers.get("Content-Range"), len(data)))
        except Exception:
            return None
        finally:
            _release(response, complete)

    def stream(self, name: str, offset: int, etag: str | None, chunk: int,
               length: int | None = None) -> Streamed | None:
        """Blob ``name`` from ``offset`` to its end (or ``length`` bytes), as it arrives,
        in pieces of at most ``chunk`` bytes, if it still has ``etag`` (when given);
        None if the answer is anything but that. One request streamed (as the official
        package reads a blob): the emulator (Azurite) serves it about four times as
        fast as ranged requests, and hashes nothing. A connection that breaks raises
        :class:`BrokenRead` from the iterator after the bytes that did arrive."""
        headers = {"If-Match": etag} if etag is not None else {}
        if length is not None:
            headers["x-ms-range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            headers["x-ms-range"] = f"bytes={offset}-"
        response = self._get(f"{self._base}/{quote(name, safe='~/')}{self._query}", headers)
        if response is None:
            return None
        got = response.headers.get("ETag", "")
        size = response.headers.get("Content-Length", "")
        ranged = offset or length is not None
        if response.status != (206 if ranged else 200) or not size.isdigit() or (
                etag is not None and got.strip('"') != etag.strip('"')):
            _release(response, False)
            return None
        return Streamed(self._pieces(response, chunk), got, offset + int(size))

    @staticmethod
    def _pieces(response: Any, chunk: int) -> Iterator[bytes]:
        complete = False
        try:
            while True:
                try:
                    piece = response.read(chunk, decode_content=False)
                except Exception as exc:
                    raise BrokenRead(str(exc)) from None
                if not piece:
                    complete = True
                    return
                yield piece
        finally:
            _release(response, complete)

    def list_page(self, prefix: str | None, marker: str | None, page_size: int | None = None,
                  metadata: bool = True) -> bytes | None:
        """The XML of one List Blobs page (with ``metadata``) of the blobs starting
        with ``prefix``, from ``marker``; None for anything unexpected."""
        query = "restype=container&comp=list" + ("&include=metadata" if metadata else "")
        for key, value in (("prefix", prefix), ("marker", marker),
                           ("maxresults", page_size and str(page_size))):
            if value:
                query += f"&{key}={quote(value, safe='')}"
        sas = "&" + self._query[1:] if self._query else ""
        response = self._get(f"{self._base}?{query}{sas}", {})
        if response is None:
            return None
        page = None
        try:
            if response.status == 200:
                page = response.read(decode_content=True)
            return page
        except Exception:
            return None
        finally:
            _release(response, page is not None)

    def _get(self, url: str, headers: dict[str, str]) -> Any:
        """The response to a GET of ``url``, signed; None if it could not be made."""
        headers = {"x-ms-version": self._version, "x-ms-date": formatdate(usegmt=True),
                   "User-Agent": self._agent, **headers}
        try:
            if self._policy is not None:
                request = HttpRequest("GET", url, headers=headers)
                self._policy.on_request(PipelineRequest(request, PipelineContext(None)))
                headers = dict(request.headers)
            return self._pool.request("GET", url, headers=headers, preload_content=False,
                                      decode_content=False, redirect=False)
        except Exception:
            return None

    def close(self) -> None:
        self._pool.clear()


_MISSING = object()


def _release(response: Any, complete: bool) -> None:
    """Give the connection back to the pool, or close it if its answer was not read to
    the end (error bodies are small: read them; a body left half-read never is)."""
    if not complete and response.status not in (200, 206):
        try:
            response.read(64 * 1024)
            complete = response.isclosed() or not response.length_remaining
        except Exception:
            complete = False
    if not complete:
        response.close()
    response.release_conn()


def _total(content_range: str | None, length: int) -> int | None:
    """The blob's size from ``Content-Range: bytes a-b/TOTAL`` (or the body's length)."""
    if content_range is None:
        return length
    _, _, total = content_range.rpartition("/")
    return int(total) if total.isdigit() else None


def _proxied(url: str) -> bool:
    """Whether requests would send ``url`` through a proxy (HTTP(S)_PROXY, NO_PROXY)."""
    from requests.utils import get_environ_proxies

    return bool(get_environ_proxies(url))


def _ca_bundle() -> str:
    """The certificates requests verifies with (its environment variables first)."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name)
        if value:
            return value
    import certifi

    return str(certifi.where())
