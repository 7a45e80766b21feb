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

A service that misbehaves on purpose is described by :class:`Rule` objects
(``rules=``), each applied to the first ``times`` requests of every path it
matches: answer with a status (``Retry-After`` given or not) or with any body
(an HTML page, garbage, a truncated listing), reset the connection without
answering, cut the body after ``cut_after`` bytes, or drip it one byte every
``drip`` seconds; ``rewrite`` changes each request's target (small listing
pages forced with ``maxresults``, under a SAS that does not sign it). Every
request is recorded (:attr:`FaultProxy.seen`: method, target, headers, time),
and the proxy also serves as a forward HTTP proxy (``HTTP_PROXY``): requests
in absolute form are counted in ``forwarded``.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from io import BufferedReader
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from loopback_proxy import LoopbackProxy

BUFFER = 256 * 1024
MAX_LINE = 64 * 1024

_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
_CODES = {429: "TooManyRequests", 500: "InternalError", 503: "ServerBusy"}


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it."""

    method: str
    target: str  # origin form: /account/container/blob?query
    headers: dict[str, str]  # names lowercased
    at: float  # time.monotonic() when its head arrived
    action: str = ""  # the rule applied to it ("" forwarded as is)

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def is_listing(self) -> bool:
        return "comp=list" in urlsplit(self.target).query


@dataclass
class Rule:
    """What to do, instead of forwarding as is, with the first ``times`` requests
    (None: all) of each path matched: ``kind`` "list" (List Blobs), "blob" (a GET of
    a blob, not a listing), or "any" request; ``blob`` narrows to paths ending with it.

    ``action``: "answer" (``status``, ``body``, ``content_type``, ``retry_after``),
    "reset" (the connection closed with a RST, nothing answered), "cut" (the answer
    forwarded, its body cut after ``cut_after`` bytes), or "drip" (the answer
    forwarded, its body sent a byte every ``drip`` seconds)."""

    action: str
    kind: str = "blob"
    blob: str | None = None
    times: int | None = 1
    status: int = 503
    body: bytes | None = None
    content_type: str = "application/xml"
    retry_after: str | None = None
    cut_after: int = 0
    drip: float = 0.05
    counts: Counter[str] = field(default_factory=Counter)

    def matches(self, method: str, target: str) -> bool:
        url = urlsplit(target)
        listing = "comp=list" in url.query
        if self.kind == "list" and not listing:
            return False
        if self.kind == "blob" and (method != "GET" or "comp=" in url.query):
            return False
        return self.blob is None or unquote(url.path).endswith("/" + self.blob)


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
                 cut_times: int | None = 1, delay: float = 0.0,
                 rules: Iterable[Rule] = (),
                 rewrite: Callable[[str], str] | None = None) -> None:
        self.fault_rate = fault_rate
        self.rewrite = rewrite  # applied to each request's target before it is forwarded
        self.statuses = statuses
        self.retry_after = retry_after
        self.cut_blob = cut_blob
        self.cut_after = cut_after
        self.cut_times = cut_times
        self.requests = 0
        self.faults: Counter[int] = Counter()
        self.cuts = 0
        self.cut_requests: list[str] = []  # the Range header of each cut request
        self.rules = list(rules)
        self.seen: list[Seen] = []
        self.forwarded = 0  # requests received in absolute form (as a forward proxy)
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

    def requests_to(self, name: str) -> list[Seen]:
        """The GETs of blob ``name`` (not listings) received, in order."""
        with self._lock:
            return [s for s in self.seen if s.method == "GET" and not s.is_listing
                    and s.path.endswith("/" + name)]

    def listings(self) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.is_listing]

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
                method, target, version = first.split(" ", 2)
                if target.startswith(("http://", "https://")):  # a forward proxy's request
                    url = urlsplit(target)
                    target = url.path + (f"?{url.query}" if url.query else "")
                    first = f"{method} {target} {version}"
                    with self._lock:
                        self.forwarded += 1
                if self.rewrite is not None and (changed := self.rewrite(target)) != target:
                    target, first = changed, f"{method} {changed} {version}"
                if self.delay:
                    time.sleep(self.delay)
                rule = self._rule(method, target)
                with self._lock:
                    self.seen.append(Seen(method, target, {k.lower(): v for k, v in headers},
                                          time.monotonic(), rule.action if rule else ""))
                if rule is not None and rule.action in ("answer", "reset"):
                    self._skip_body(rfile, headers)
                    if rule.action == "reset":
                        _reset(client)
                        return
                    client.sendall(_answer(rule, method))
                    continue
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
                if not self._relay_response(up_rfile, client, method, target, headers, rule):
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

    def _rule(self, method: str, target: str) -> Rule | None:
        """The first rule for this request that has not been applied its number of times
        to this path yet (counted)."""
        path = urlsplit(target).path
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, target) and (rule.times is None
                                                     or rule.counts[path] < rule.times):
                    rule.counts[path] += 1
                    return rule
        return None

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
                        target: str, request_headers: list[tuple[str, str]],
                        rule: Rule | None = None) -> bool:
        """Relay one response; False when the connection must end after it."""
        head = _read_head(up_rfile)
        if head is None:
            return False
        first, headers = head
        status = int(first.split(" ")[1])
        client.sendall(_encode_head(first, headers))
        length = _header(headers, "content-length")
        if rule is not None and length and method != "HEAD":
            body = up_rfile.read(int(length))
            if rule.action == "cut":
                client.sendall(body[:rule.cut_after])
                return False  # the finally of _serve resets both connections mid-body
            for i in range(len(body)):  # "drip"
                client.sendall(body[i:i + 1])
                if self._closed:
                    return False
                time.sleep(rule.drip)
            return True
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


def _answer(rule: Rule, method: str) -> bytes:
    """The proxy's own answer for an "answer" rule: a storage error (XML, with its
    code) for an error status without a body, else the rule's body."""
    body = rule.body
    headers = [("x-ms-request-id", str(uuid.uuid4())), ("x-ms-version", "2025-01-05")]
    if body is None:
        code = _CODES.get(rule.status, "InternalError")
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                f"<Message>injected by the test proxy</Message></Error>").encode()
        headers.append(("x-ms-error-code", code))
    headers += [("Content-Type", rule.content_type), ("Content-Length", str(len(body)))]
    if rule.retry_after is not None:
        headers.append(("Retry-After", rule.retry_after))
    reason = _REASONS.get(rule.status, "OK" if rule.status == 200 else "Error")
    head = _encode_head(f"HTTP/1.1 {rule.status} {reason}", headers)
    return head if method == "HEAD" else head + body


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a RST (SO_LINGER 0): the peer sees "connection reset"."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # no shutdown first: that would send a FIN, not a RST


def pages_of(size: int) -> Callable[[str], str]:
    """A ``rewrite`` that makes every List Blobs page ``size`` blobs long (``maxresults``
    set by the proxy: a SAS does not sign it)."""
    def rewrite(target: str) -> str:
        url = urlsplit(target)
        query = parse_qsl(url.query, keep_blank_values=True)
        if ("comp", "list") not in query:
            return target
        query = [(k, v) for k, v in query if k != "maxresults"] + [("maxresults", str(size))]
        return f"{url.path}?{urlencode(query, quote_via=quote)}"
    return rewrite
