"""A loopback HTTP/1.1 proxy in front of Azurite that injects faults, for tests.

Each client connection gets its own upstream connection, and requests on a
connection are handled one after the other (the Azure SDK's HTTP client
never pipelines). For every request the proxy may:

- answer it itself with an error status (500, 503 or 429 with a
  ``Retry-After``), on a fraction ``fault_rate`` of the requests chosen by a
  seeded random generator; the request body is read and dropped, so the
  service never sees the request;
- forward it and cut the connection in the middle of the response body, for
  GET requests whose path ends with a given blob name (``cut_blob``), after
  ``cut_after`` body bytes, ``cut_times`` times (None: every time).

``delay`` seconds are waited before each request is handled (a slow
service, to catch an operation in the middle). It counts the requests, the
injected statuses and the cuts. Every thread is a daemon; :meth:`close`
shuts every connection down and waits (bounded) for the threads to end.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from io import BufferedReader
from urllib.parse import unquote, urlsplit

from loopback_proxy import LoopbackProxy

BUFFER = 256 * 1024
MAX_LINE = 64 * 1024

_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
_CODES = {429: "TooManyRequests", 500: "InternalError", 503: "ServerBusy"}


class _Closed(Exception):
    """A peer closed its side: this connection is over."""


def _read_head(rfile: BufferedReader) -> tuple[str, list[tuple[str, str]]] | None:
    """The first line and the headers of a message; None at a clean end of stream."""
    first = rfile.readline(MAX_LINE)
    if not first:
        return None
    if not first.endswith(b"\r\n"):
        raise _Closed("truncated head")
    headers = []
    while True:
        line = rfile.readline(MAX_LINE)
        if not line.endswith(b"\r\n"):
            raise _Closed("truncated head")
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return first.decode("latin-1").rstrip("\r\n"), headers


def _header(headers: Iterable[tuple[str, str]], name: str) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value
    return ""


def _encode_head(first: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [first, *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _copy_exact(rfile: BufferedReader, n: int, sink: Callable[[bytes], None]) -> None:
    while n > 0:
        data = rfile.read(min(n, BUFFER))
        if not data:
            raise _Closed("body cut short")
        sink(data)
        n -= len(data)


def _copy_chunked(rfile: BufferedReader, sink: Callable[[bytes], None]) -> None:
    """Relay a chunked body as it is, up to and including its last chunk and trailers."""
    while True:
        size_line = rfile.readline(MAX_LINE)
        if not size_line.endswith(b"\r\n"):
            raise _Closed("chunked body cut short")
        sink(size_line)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            while True:  # trailers, then the empty line
                line = rfile.readline(MAX_LINE)
                if not line.endswith(b"\r\n"):
                    raise _Closed("chunked body cut short")
                sink(line)
                if line == b"\r\n":
                    return
        _copy_exact(rfile, size + 2, sink)


class FaultProxy(LoopbackProxy):
    """Forward ``127.0.0.1:port`` to ``127.0.0.1:upstream_port``, injecting faults."""

    def __init__(self, upstream_port: int, *, seed: int = 0, fault_rate: float = 0.0,
                 statuses: tuple[int, ...] = (500, 503, 429), retry_after: int = 1,
                 cut_blob: str | None = None, cut_after: int = 0,
                 cut_times: int | None = 1, delay: float = 0.0) -> None:
        self.fault_rate = fault_rate
        self.statuses = statuses
        self.retry_after = retry_after
        self.cut_blob = cut_blob
        self.cut_after = cut_after
        self.cut_times = cut_times
        self.requests = 0
        self.faults: Counter[int] = Counter()
        self.cuts = 0
        self.cut_requests: list[str] = []  # the Range header of each cut request
        self._rng = random.Random(seed)
        super().__init__(upstream_port, delay=delay, name="fault-proxy")

    # -- public --

    @property
    def injected(self) -> int:
        with self._lock:
            return sum(self.faults.values())

    def set_fault_rate(self, rate: float) -> None:
        with self._lock:
            self.fault_rate = rate

    # -- internals --

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        upstream: socket.socket | None = None
        try:
            rfile = client.makefile("rb")
            up_rfile: BufferedReader | None = None
            while not self._closed:
                head = _read_head(rfile)
                if head is None:
                    return
                first, headers = head
                method, target = first.split(" ")[:2]
                if self.delay:
                    time.sleep(self.delay)
                fault = self._decide()
                if fault:
                    self._skip_body(rfile, headers)
                    client.sendall(self._fault_response(fault, method))
                    continue
                if upstream is None:
                    try:
                        upstream = socket.create_connection(self.upstream, timeout=30)
                    except OSError:
                        return  # the service is down: the client sees the connection close
                    self._track(upstream)
                    up_rfile = upstream.makefile("rb")
                assert up_rfile is not None
                upstream.sendall(_encode_head(first, headers))
                self._copy_body(rfile, headers, upstream.sendall)
                if not self._relay_response(up_rfile, client, method, target, headers):
                    return
        except (OSError, _Closed, ValueError):
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    self._untrack(sock)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    def _decide(self) -> int:
        """The status to inject for this request, or 0 to forward it."""
        with self._lock:
            self.requests += 1
            if self.fault_rate and self._rng.random() < self.fault_rate:
                status = self._rng.choice(self.statuses)
                self.faults[status] += 1
                return status
        return 0

    def _copy_body(self, rfile: BufferedReader, headers: list[tuple[str, str]],
                   sink: Callable[[bytes], None]) -> None:
        if "chunked" in _header(headers, "transfer-encoding").lower():
            _copy_chunked(rfile, sink)
        else:
            _copy_exact(rfile, int(_header(headers, "content-length") or 0), sink)

    def _skip_body(self, rfile: BufferedReader, headers: list[tuple[str, str]]) -> None:
        self._copy_body(rfile, headers, lambda _: None)

    def _fault_response(self, status: int, method: str) -> bytes:
        code = _CODES.get(status, "InternalError")
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                f"<Message>injected by the test proxy</Message></Error>").encode()
        headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
                   ("x-ms-error-code", code), ("x-ms-request-id", str(uuid.uuid4())),
                   ("x-ms-version", "2025-01-05")]
        if status == 429:
            headers.append(("Retry-After", str(self.retry_after)))
        head = _encode_head(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", headers)
        return head if method == "HEAD" else head + body

    def _should_cut(self, method: str, target: str) -> bool:
        if self.cut_blob is None or method != "GET":
            return False
        url = urlsplit(target)
        if "comp=" in url.query or not unquote(url.path).endswith("/" + self.cut_blob):
            return False
        with self._lock:
            if self.cut_times is not None and self.cuts >= self.cut_times:
                return False
            self.cuts += 1
            return True

    def _relay_response(self, up_rfile: BufferedReader, client: socket.socket, method: str,
                        target: str, request_headers: list[tuple[str, str]]) -> bool:
        """Relay one response; False when the connection must end after it."""
        head = _read_head(up_rfile)
        if head is None:
            return False
        first, headers = head
        status = int(first.split(" ")[1])
        client.sendall(_encode_head(first, headers))
        keep = "close" not in _header(headers, "connection").lower()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return keep
        if "chunked" in _header(headers, "transfer-encoding").lower():
            _copy_chunked(up_rfile, client.sendall)
            return keep
        length = _header(headers, "content-length")
        if not length:
            while data := up_rfile.read1(BUFFER):  # the body lasts until the connection ends
                client.sendall(data)
            return False
        left = int(length)
        if 200 <= status < 300 and left > self.cut_after and self._should_cut(method, target):
            with self._lock:
                self.cut_requests.append(_header(request_headers, "x-ms-range")
                                         or _header(request_headers, "range"))
            _copy_exact(up_rfile, self.cut_after, client.sendall)
            return False  # the finally of _serve resets both connections mid-body
        _copy_exact(up_rfile, left, client.sendall)
        return keep
