"""gRPC calls over :mod:`~kloset_sdk._wire.http2`: the server side of plakar's RPCs.

Each request stream becomes a :class:`Call`: its messages are reassembled
from the DATA frames (5-byte prefix: compression flag, length), and its
method runs in a worker thread with the call as its context (``abort``,
``is_active``, ``add_callback``, as grpcio's servicer context). Responses
are framed and sent as they come; the call ends with the ``grpc-status``
and ``grpc-message`` trailers. A client that cancels (RST_STREAM) or goes
away makes the request iterator raise :class:`Cancelled` and the sending
stop.

The methods are registered per path with their kind: unary or streaming
requests and responses. A response ``serialize`` of None means the method
yields its messages already encoded (Open, Get: see
``_services.common.chunk_messages``).

A request that is not gRPC (another method than POST, or another content
type than ``application/grpc``) gets a plain HTTP error (415 or 405) once it
ends. Calls not finished yet are bounded (``Server.max_calls``): beyond, new
streams are refused, so a client resetting streams as fast as it opens them
cannot pile up work.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

from .http2 import (
    INTERNAL_ERROR,
    Connection,
    Request,
    Stream,
    StreamRefused,
    StreamReset,
    header_block,
)

log = logging.getLogger("kloset_sdk")

# plakar never sends messages over 4 MiB; allow some headroom.
MAX_MESSAGE = 16 << 20
# A message is given back to the stream's window when its handler takes it; one
# at least this large is credited as it arrives instead, or a message larger than
# the stream window (h2state.STREAM_WINDOW, 4 MiB) could never complete. Smaller
# ones (all of plakar's) keep the one give-back per message.
CREDIT_AHEAD = 2 << 20
# ... in steps of at least this much.
_CREDIT_STEP = 256 << 10
# Requests handed over inline (take_requests_inline) are given back in steps of this
# much: a small share of the stream window (h2state.STREAM_WINDOW, 4 MiB).
_INLINE_CREDIT_STEP = 32 << 10
MAX_WORKERS = 256
_RESPONSE_HEADERS = header_block([(":status", "200"), ("content-type", "application/grpc")])
_NOT_GRPC_BODY = b"a gRPC server: requests are POST with content-type application/grpc\n"


class Status(enum.IntEnum):
    """gRPC status codes."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class Aborted(Exception):
    """Raised by :meth:`Call.abort`: the call ends with this status."""

    def __init__(self, code: Status, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Cancelled(Exception):
    """The client cancelled the call, or went away."""


class Many(list):  # type: ignore[type-arg]
    """Several response messages a streaming handler yields at once: they go out
    together, in one piece of DATA (a message per record cost a pass through the
    connection's lock and framing each, a sixth of an importer's CPU per record)."""


class Kind(enum.Enum):
    UNARY_UNARY = (False, False)
    UNARY_STREAM = (False, True)
    STREAM_UNARY = (True, False)
    STREAM_STREAM = (True, True)

    @property
    def streaming_request(self) -> bool:
        return bool(self.value[0])

    @property
    def streaming_response(self) -> bool:
        return bool(self.value[1])


@dataclass(frozen=True)
class Method:
    kind: Kind
    handler: Callable[..., Any]
    parse: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes] | None  # None: the handler yields encoded messages


def _prefix(message: bytes) -> bytes:
    """A message's 5-byte gRPC prefix: flag 0 (not compressed), then its length."""
    return len(message).to_bytes(5, "big")


def _percent(text: str) -> str:
    """grpc-message encoding: UTF-8, bytes outside printable ASCII (and %) as %XX."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}"
                   for b in text.encode())


class Call:
    """One RPC: its request messages as they arrive, and the context of its handler."""

    _END = object()

    def __init__(self, server: Server, conn: Connection, stream: Stream,
                 method: Method | None, path: str) -> None:
        self._server = server
        self._conn = conn
        self._stream = stream
        self._method = method
        self._path = path
        self._lock = threading.Condition()
        self._parts: deque[bytes | memoryview] = deque()
        self._have = 0
        self._need = -1  # length of the message being received; -1: its prefix first
        self._messages: deque[Any] = deque()  # raw messages; _END at the end
        self._credits: deque[int] = deque()  # of each message, bytes given back already
        self._credited = 0  # of the message being received, bytes given back already
        self._uncredited = 0  # of requests handed over inline, bytes not given back yet
        self._callbacks: list[Callable[[], None]] = []
        self._on_request: Callable[[bytes], None] | None = None  # see take_requests_inline
        self._cancelled = False
        self._done = False
        self._headers_sent = False
        self._started = False
        self._released = False
        if method is None:
            self._start()  # answered at once: unknown method
        elif method.kind.streaming_request:
            self._start()

    # -- events of the stream (reader thread; must not block) --

    def data(self, payload: bytes | memoryview) -> None:
        on_request = self._on_request
        if on_request is not None and not self._parts and self._need < 0 and \
                len(payload) > 5 and not payload[0] and \
                int.from_bytes(payload[1:5], "big") == len(payload) - 5:
            # The usual frame of a stream of small requests (plakar's acknowledgements):
            # exactly one whole message, handed over without reassembly.
            self._consumed_inline(len(payload))
            on_request(bytes(payload[5:]))
            return
        self._parts.append(payload)
        self._have += len(payload)
        while True:
            if self._need < 0:
                if self._have < 5:
                    return
                head = self._take(5)
                if head[0]:
                    self._fail_fast(Status.INTERNAL, "compressed messages are not supported")
                    return
                self._need = int.from_bytes(head[1:5], "big")
                if self._need > MAX_MESSAGE:
                    self._fail_fast(Status.RESOURCE_EXHAUSTED,
                                    f"message of {self._need} bytes is too large")
                    return
            if self._have < self._need:
                if CREDIT_AHEAD <= self._need <= MAX_MESSAGE:
                    self._credit_partial()
                return
            message = self._take(self._need)
            self._need = -1
            credited, self._credited = self._credited, 0
            with self._lock:
                on_request = self._on_request
                if on_request is None:
                    self._messages.append(message)
                    self._credits.append(credited)
                    self._lock.notify_all()
            if on_request is not None:
                if credited:
                    self._conn.consumed(self._stream, len(message) + 5, credited)
                else:
                    self._consumed_inline(len(message) + 5)
                on_request(message)

    def _consumed_inline(self, n: int) -> None:
        """``n`` bytes of a request handed over inline: given back to the windows in
        steps (one pass through the connection's lock per acknowledgement was a
        tenth of the reader thread's work). What is left when the stream ends is
        counted by the connection as the stream closes."""
        self._uncredited += n
        if self._uncredited >= _INLINE_CREDIT_STEP:
            n, self._uncredited = self._uncredited, 0
            self._conn.consumed(self._stream, n)

    def _credit_partial(self) -> None:
        """Give back to the stream's window what arrived of a large message."""
        held = self._have + 5 - self._credited  # the prefix is taken already
        if held >= _CREDIT_STEP:
            self._credited += held
            self._conn.credit(self._stream, held)

    def end(self) -> None:
        with self._lock:
            self._messages.append(self._END)
            self._lock.notify_all()
        if self._method is not None and not self._method.kind.streaming_request:
            self._start()

    def reset(self) -> None:
        with self._lock:
            self._cancelled = True
            self._lock.notify_all()
        self._terminate()

    def _take(self, n: int) -> bytes:
        """The next ``n`` bytes received (one copy at most)."""
        if n == 0:
            return b""
        first = self._parts[0]
        if len(first) >= n:
            taken = bytes(first[:n]) if isinstance(first, memoryview) or len(first) > n \
                else first
            if len(first) > n:
                self._parts[0] = memoryview(first)[n:]
            else:
                self._parts.popleft()
            self._have -= n
            return taken
        pieces: list[bytes | memoryview] = []
        got = 0
        while got < n:
            part = self._parts[0]
            take = min(len(part), n - got)
            if take == len(part):
                pieces.append(part)
                self._parts.popleft()
            else:
                pieces.append(memoryview(part)[:take])
                self._parts[0] = memoryview(part)[take:]
            got += take
        self._have -= n
        return b"".join(pieces)

    def _fail_fast(self, code: Status, details: str) -> None:
        self._parts.clear()
        self._have = 0
        self._need = 1 << 62  # ignore whatever else comes
        self._server.pool.submit(self._finish, code, details)

    # -- the request, as the handler reads it --

    def _next_message(self) -> Any:
        with self._lock:
            while not self._messages:
                if self._cancelled or self._conn.closed:
                    raise Cancelled
                self._lock.wait()
            message = self._messages.popleft()
            credited = self._credits.popleft() if message is not self._END else 0
        if message is self._END:
            with self._lock:
                self._messages.appendleft(self._END)
            return self._END
        self._conn.consumed(self._stream, len(message) + 5, credited)
        return message

    def requests(self) -> Iterator[Any]:
        """The request messages, parsed, until the client half-closes."""
        assert self._method is not None
        parse = self._method.parse
        while (message := self._next_message()) is not self._END:
            yield parse(message)

    def take_requests_inline(self, on_request: Callable[[bytes], None]) -> None:
        """From now on, hand each request message, still encoded, to ``on_request`` in
        the connection's reader thread as it arrives (those already received first, in
        order), instead of to the request iterator, which then only waits for the
        request's end. ``on_request`` must be quick and must not raise or block.

        For a stream of small requests that need only a quick look (the importer's
        acknowledgements, one per record): handing each one to the handler's thread
        woke that thread once per message, which cost more than the message's
        handling itself."""
        with self._lock:
            # The messages received (each with its credit), the end marker left queued.
            pending = []
            while self._credits:
                pending.append((self._messages.popleft(), self._credits.popleft()))
            # Under the lock, before the reader thread can deliver another message:
            # the pending ones are handled first, in order.
            for message, credited in pending:
                self._conn.consumed(self._stream, len(message) + 5, credited)
                on_request(message)
            self._on_request = on_request

    def _single_request(self) -> Any:
        assert self._method is not None
        message = self._next_message()
        if message is self._END:
            raise Aborted(Status.INTERNAL, f"{self._path}: no request message")
        return self._method.parse(message)

    # -- the context a handler gets --

    def is_active(self) -> bool:
        return not (self._cancelled or self._done or self._conn.closed)

    def abort(self, code: Any, details: str) -> NoReturn:
        raise Aborted(Status(int(getattr(code, "value", code))), details)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` when the call ends; False (not registered) if it has."""
        with self._lock:
            if self._done or self._cancelled:
                return False
            self._callbacks.append(callback)
            return True

    # -- running the handler (worker thread) --

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._server.pool.submit(self._run)

    def _run(self) -> None:
        method = self._method
        try:
            if method is None:
                raise Aborted(Status.UNIMPLEMENTED, f"unknown method {self._path}")
            request = self.requests() if method.kind.streaming_request \
                else self._single_request()
            result = method.handler(request, self)
            if method.kind.streaming_response:
                for response in result:
                    if type(response) is Many:
                        self._send_many(response)
                    else:
                        self._send(response)
            else:
                self._send(result)
            self._finish(Status.OK, "")
        except Aborted as exc:
            self._finish(exc.code, exc.details)
        except (Cancelled, StreamReset):
            log.debug("%s: cancelled by the client", self._path)
            self._terminate()
        except Exception as exc:
            log.debug("%s failed", self._path, exc_info=exc)
            self._finish(Status.UNKNOWN, f"{type(exc).__name__}: {exc}")

    def _send(self, response: Any) -> None:
        assert self._method is not None
        serialize = self._method.serialize
        message = response if serialize is None else serialize(response)
        self._send_headers()
        self._conn.send_data(self._stream, (_prefix(message), message))

    def _send_many(self, responses: Many) -> None:
        assert self._method is not None
        serialize = self._method.serialize
        parts: list[bytes] = []
        for response in responses:
            message = response if serialize is None else serialize(response)
            parts.append(_prefix(message))
            parts.append(message)
        self._send_headers()
        self._conn.send_data(self._stream, (b"".join(parts),))

    def _send_headers(self) -> None:
        """The response's headers, before its first message."""
        if not self._headers_sent:
            self._conn.send_headers(self._stream, _RESPONSE_HEADERS)
            self._headers_sent = True

    def _finish(self, code: Status, details: str) -> None:
        with self._lock:
            if self._done:
                return
        trailers = [("grpc-status", str(int(code)))]
        if details:
            trailers.append(("grpc-message", _percent(details)))
        if not self._headers_sent:
            trailers = [(":status", "200"), ("content-type", "application/grpc"), *trailers]
        try:
            self._conn.send_headers(self._stream, header_block(trailers), end_stream=True)
            self._headers_sent = True
        except StreamReset:
            pass
        except Exception:
            log.exception("%s: could not end the call", self._path)
            self._conn.reset(self._stream, INTERNAL_ERROR)
        self._terminate()

    def _terminate(self) -> None:
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
            released, self._released = self._released, True
            self._lock.notify_all()
        if not released:
            self._server.release()
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("call termination callback failed")


class _NotGrpc:
    """A request that is not gRPC: its body is dropped, then it is answered with an
    HTTP error and a line saying what this server takes."""

    def __init__(self, server: Server, conn: Connection, stream: Stream, status: str) -> None:
        self._server = server
        self._conn = conn
        self._stream = stream
        self._status = status
        self._released = False

    def data(self, payload: bytes | memoryview) -> None:
        self._conn.consumed(self._stream, len(payload))

    def end(self) -> None:
        self._server.pool.submit(self._answer)

    def reset(self) -> None:
        self._release()

    def _answer(self) -> None:
        try:
            self._conn.send_headers(self._stream, header_block([
                (":status", self._status), ("content-type", "text/plain; charset=utf-8"),
                ("content-length", str(len(_NOT_GRPC_BODY)))]))
            self._conn.send_data(self._stream, (_NOT_GRPC_BODY,), end_stream=True)
        except StreamReset:
            pass
        finally:
            self._release()

    def _release(self) -> None:
        with self._server.lock:
            released, self._released = self._released, True
        if not released:
            self._server.release()


def _is_grpc(content_type: bytes) -> bool:
    return content_type == b"application/grpc" or \
        content_type.startswith((b"application/grpc+", b"application/grpc;"))


class Server:
    """The gRPC methods of one connector, served on one HTTP/2 connection."""

    def __init__(self, methods: dict[str, Method], max_workers: int = MAX_WORKERS) -> None:
        self.methods = methods
        self.max_workers = max_workers
        self.pool = ThreadPoolExecutor(max_workers, thread_name_prefix="rpc")
        # Calls not finished: those of open streams, and those of streams reset
        # whose handler still runs or waits for a worker.
        self.max_calls = 2 * max_workers
        self.lock = threading.Lock()
        self._active = 0

    def serve(self, rfd: int, wfd: int) -> Connection:
        """Serve the connection on ``rfd``/``wfd`` until the client closes it."""
        conn = Connection(rfd, wfd, lambda stream, request: self._call(conn, stream, request),
                          max_streams=self.max_workers)
        conn.run()
        return conn

    def release(self) -> None:
        """A call is finished."""
        with self.lock:
            self._active -= 1

    def _call(self, conn: Connection, stream: Stream, request: Request) -> Call | _NotGrpc:
        with self.lock:
            if self._active >= self.max_calls:
                raise StreamRefused
            self._active += 1
        if not _is_grpc(request.content_type):
            return _NotGrpc(self, conn, stream, "415")
        if request.method != b"POST":
            return _NotGrpc(self, conn, stream, "405")
        return Call(self, conn, stream, self.methods.get(request.path), request.path)
