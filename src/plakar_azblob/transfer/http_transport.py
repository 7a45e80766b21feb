"""A slim azure-core transport on urllib3, for the reads that matter most.

azure-core's ``RequestsTransport`` costs about 0.7 ms of CPU per request in
requests itself (sessions, cookies, environment merging, adapters), more
than azure-core's policies and more than the service takes to answer a
small read. This transport implements azure-core's own ``HttpTransport``
interface directly on a urllib3 pool, so the requests made through it keep
every policy of the pipeline (retries, request ids, user agent, signing,
tokens, proxies) at a fraction of the cost.

It takes the environment as requests does for the Azure SDK's clients:
``HTTP(S)_PROXY``/``NO_PROXY`` (or the pipeline's ``proxies``), and for TLS
``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (a file or a directory of
certificates), else certifi's bundle. Errors are azure-core's, mapped as its
requests transport maps them: ``ServiceRequestError`` when the request could
not be sent, ``ServiceResponseError`` when the answer broke off.

Requests and responses are azure-core's transport classes
(``azure.core.pipeline.transport``), not ``azure.core.rest``'s: the storage
SDK's policies (signing, retries) read a request's ``.query`` and ``.body``,
which a rest request resolves through a compatibility ``__getattr__``: 126 000
instructions more per read (callgrind of a 4 KiB read: 1.88 million in all).

Every body read has a deadline as well as the socket's read timeout: a
body that keeps the connection alive with a byte now and then (the read
timeout never fires) is cut once it is late (:class:`BodyTimeout`), and the
caller treats it as a broken connection.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

import urllib3
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

# Retries are the pipeline's (one object for every request: urllib3 would make one each).
_NO_RETRIES = urllib3.Retry(total=False, redirect=False)
# Bytes read at a time from a body of unknown length (chunked).
PIECE = 1 << 20
# How often late bodies are looked for (seconds): the precision of their deadline.
TICK = 0.5


class BodyTimeout(ServiceResponseTimeoutError):
    """A response body did not arrive in time (stalled, or dripping)."""


def body_deadline(nbytes: int, read_timeout: float, min_rate: float) -> float:
    """Seconds allowed to receive ``nbytes`` of a body: the read timeout (the
    silence tolerated anywhere), plus the time they take at ``min_rate`` bytes/s."""
    return read_timeout + nbytes / min_rate


class _Watchdog:
    """Shuts down the sockets of responses whose body is late, from one thread.

    A blocked read can only be interrupted from outside (urllib3's
    ``HTTPResponse.shutdown``). Arming and disarming cost a dictionary
    operation under a lock; the thread looks at the armed responses once every
    :data:`TICK` seconds (deadlines are never shorter than the read timeout),
    and sleeps for good once none is armed at a tick.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._armed: dict[int, tuple[float, _Guard]] = {}
        self._idle = False
        self._pid = 0

    def arm(self, raw: urllib3.HTTPResponse, seconds: float) -> _Guard:
        guard = _Guard(raw)
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (a fork server's child)
                self._pid = os.getpid()
                self._armed = {}
                self._idle = False
                threading.Thread(target=self._run, daemon=True, name="azblob-deadline").start()
            self._armed[id(guard)] = (time.monotonic() + seconds, guard)
            if self._idle:
                self._idle = False
                self._wake.notify()
        return guard

    def disarm(self, guard: _Guard) -> bool:
        """Stop watching; whether the deadline had passed (the socket was shut down)."""
        with self._lock:
            self._armed.pop(id(guard), None)
            return guard.expired

    def _run(self) -> None:
        with self._lock:
            while True:
                if not self._armed:
                    self._idle = True
                    self._wake.wait()  # until a response is armed
                # A tick before looking: most responses are done by then, and until it
                # has passed no arm wakes this thread (one wake-up a tick at most).
                self._wake.wait(TICK)
                now = time.monotonic()
                for key, (due, guard) in list(self._armed.items()):
                    if due <= now:
                        del self._armed[key]
                        guard.expired = True
                        # Already released or closed: nothing left to interrupt.
                        with contextlib.suppress(Exception):
                            guard.raw.shutdown()


class _Guard:
    __slots__ = ("expired", "raw")

    def __init__(self, raw: urllib3.HTTPResponse) -> None:
        self.raw = raw
        self.expired = False


_watchdog = _Watchdog()


class Urllib3Response(HttpResponse):
    """An azure-core transport response read from a urllib3 one (its body not decoded:
    the bytes as stored). :meth:`read` reads it all, :meth:`read_piece` piece by piece;
    either gives the connection back to the pool once the body is read to its end."""

    def __init__(self, request: HttpRequest, raw: urllib3.HTTPResponse, read_timeout: float,
                 min_rate: float) -> None:
        super().__init__(request, raw, PIECE)
        self.status_code = raw.status
        self.headers = raw.headers
        self.reason = raw.reason
        self.content_type = raw.headers.get("Content-Type")
        self._raw = raw
        self._read_timeout = read_timeout
        self._min_rate = min_rate
        self._content: bytes | None = None
        self._closed = False
        self.is_stream_consumed = False

    def body(self) -> bytes:
        if self._content is None:
            raise RuntimeError("the body was not read (call read())")
        return self._content

    def stream_download(self, pipeline: Any, **kwargs: Any) -> Iterator[bytes]:
        try:
            while piece := self.read_piece(self.block_size):
                yield piece
        finally:
            self.close()

    def close(self) -> None:
        """Give the connection back to the pool if the body was read to its end, else
        close it (a half-read body must never be read by the next request)."""
        if self._closed:
            return
        self._closed = True
        raw = self._raw
        if not (self.is_stream_consumed and not raw.length_remaining):
            raw.close()
        raw.release_conn()

    def read(self) -> bytes:
        """The whole body, within its deadline."""
        if self._content is None:
            length = self._raw.length_remaining
            if length is not None:
                self._content = self._read(length, None)
            else:
                self._content = b"".join(iter(lambda: self._read(PIECE, PIECE), b""))
            self.is_stream_consumed = True
            self.close()
        return self._content

    # -- ours --

    def read_piece(self, size: int) -> bytes:
        """At most ``size`` bytes of the body (b"" at its end), within the deadline of
        that many bytes: :class:`BodyTimeout` if late, ``ServiceResponseError`` if the
        connection broke."""
        piece = self._read(size, size)
        if not piece:
            self.is_stream_consumed = True
        return piece

    def _read(self, expected: int, amount: int | None) -> bytes:
        raw = self._raw
        seconds = body_deadline(expected, self._read_timeout, self._min_rate)
        guard = _watchdog.arm(raw, seconds)
        try:
            data = raw.read(amount, decode_content=False)
        except (HTTPError, OSError) as exc:
            late = _watchdog.disarm(guard)
            self.close()
            if late:
                raise BodyTimeout(_late(expected, seconds)) from None
            raise _response_error(exc) from exc
        if _watchdog.disarm(guard) and (amount is None or len(data) < amount):
            self.close()  # cut by the watchdog at the very end: short, not trusted
            raise BodyTimeout(_late(expected, seconds))
        return data


def _late(nbytes: int, seconds: float) -> str:
    return (f"the response body was too slow: {nbytes} bytes not received within "
            f"{seconds:.0f} s (timed out)")


def _response_error(exc: BaseException) -> ServiceResponseError:
    if isinstance(exc, ReadTimeoutError):
        return ServiceResponseTimeoutError(exc, error=exc)
    return ServiceResponseError(exc, error=exc)


class Urllib3Transport(HttpTransport):  # type: ignore[type-arg]
    """azure-core's ``HttpTransport`` on a urllib3 pool (see the module's docstring)."""

    def __init__(self, *, pool_size: int, connection_timeout: float, read_timeout: float,
                 min_rate: float, use_env_settings: bool = True) -> None:
        self._timeout = urllib3.Timeout(connect=connection_timeout, read=read_timeout)
        self._read_timeout = read_timeout
        self._min_rate = min_rate
        self._env = use_env_settings
        self._pool_kw: dict[str, Any] = {"maxsize": pool_size, "block": False,
                                         "retries": _NO_RETRIES, "timeout": self._timeout}
        self._pool_kw.update(tls_settings(use_env_settings))
        self._direct = urllib3.PoolManager(num_pools=4, **self._pool_kw)
        self._proxies: dict[str, urllib3.PoolManager] = {}
        self._routes: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            managers = [self._direct, *self._proxies.values()]
        for manager in managers:
            manager.clear()

    def __enter__(self) -> Urllib3Transport:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def send(self, request: HttpRequest, *, stream: bool = False,
             proxies: MutableMapping[str, str] | None = None,
             **kwargs: Any) -> Urllib3Response:
        if kwargs:  # an option no policy took, that this transport would ignore
            raise TypeError(f"unexpected transport options: {', '.join(sorted(kwargs))}")
        manager = self._manager(request.url, proxies)
        try:
            raw = manager.urlopen(request.method, request.url, body=request.body,
                                  headers=request.headers, preload_content=False,
                                  decode_content=False, redirect=False, retries=_NO_RETRIES)
        except (NewConnectionError, ConnectTimeoutError, ProxyError, SSLError) as exc:
            timeout = isinstance(exc, ConnectTimeoutError) and not isinstance(
                exc, NewConnectionError)
            error = ServiceRequestTimeoutError if timeout else ServiceRequestError
            raise error(exc, error=exc) from exc
        except (HTTPError, OSError) as exc:
            raise _response_error(exc) from exc
        assert isinstance(raw, urllib3.HTTPResponse)  # not preloaded: the socket's own
        response = Urllib3Response(request, raw, self._read_timeout, self._min_rate)
        if not stream:
            response.read()
        return response

    def _manager(self, url: str, proxies: MutableMapping[str, str] | None) -> urllib3.PoolManager:
        """The pool for ``url``: direct, or through the proxy requests would choose."""
        end = url.find("/", url.find("//") + 2)
        key = url if end < 0 else url[:end]  # scheme://host:port has one route
        if proxies is None and key in self._routes:
            proxy = self._routes[key]
        else:
            proxy = _choose_proxy(url, proxies, self._env)
            if proxies is None:
                self._routes[key] = proxy
        if proxy is None:
            return self._direct
        with self._lock:
            manager = self._proxies.get(proxy)
            if manager is None:
                manager = self._proxies[proxy] = _proxy_manager(proxy, self._pool_kw)
            return manager


def _choose_proxy(url: str, proxies: MutableMapping[str, str] | None, env: bool) -> str | None:
    """The proxy requests would take for ``url``: the pipeline's, then the environment's
    (``HTTP(S)_PROXY``, ``ALL_PROXY``, honouring ``NO_PROXY``)."""
    from requests.utils import get_environ_proxies, select_proxy

    chosen = dict(proxies or {})
    if env:
        for scheme, value in get_environ_proxies(url, no_proxy=chosen.get("no_proxy")).items():
            chosen.setdefault(scheme, value)
    return select_proxy(url, chosen) or None


def _proxy_manager(proxy: str, pool_kw: dict[str, Any]) -> urllib3.PoolManager:
    if "://" not in proxy:
        proxy = "http://" + proxy  # as requests reads a bare host:port
    parts = urlsplit(proxy)
    if parts.scheme.startswith("socks"):
        try:
            from urllib3.contrib.socks import SOCKSProxyManager
        except ImportError:
            raise ServiceRequestError(
                f"the {parts.scheme} proxy needs the PySocks package") from None
        return SOCKSProxyManager(proxy, num_pools=4, **pool_kw)
    headers = {}
    if parts.username:
        headers = urllib3.make_headers(
            proxy_basic_auth=f"{unquote(parts.username)}:{unquote(parts.password or '')}")
    return urllib3.ProxyManager(proxy, num_pools=4, proxy_headers=headers, **pool_kw)


def tls_settings(use_env: bool) -> dict[str, Any]:
    """How requests verifies servers: ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` (a file,
    or a directory of hashed certificates), else certifi's bundle."""
    location = ""
    if use_env:
        location = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or ""
    if not location:
        import certifi

        location = certifi.where()
    if os.path.isdir(location):
        return {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": location}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": location}
