"""HTTP/2 (RFC 9113), server side, on two file descriptors: what a gRPC server
on plakar's pipes needs.

plakar speaks plaintext HTTP/2 with prior knowledge over the plugin's stdin
and stdout. :class:`Connection` reads frames from one descriptor in the
thread that calls :meth:`Connection.run`, hands each to the protocol's rules
(:class:`~kloset_sdk._wire.h2state.ServerState`, which says what it means and what
must be answered), and passes the streams' events to their handlers. A
writer thread takes the frames to send from a queue, in order, many per
system call. The few header blocks a gRPC server sends are literals without
indexing (:func:`header_block`), so the client's decoding table is never
touched.

Flow control, both ways:
- sending: DATA never exceeds the client's connection and stream windows,
  nor its frame size; senders wait for WINDOW_UPDATE; bytes queued for the
  writer are capped too (``MAX_QUEUED``), so memory stays bounded when
  plakar reads slowly;
- receiving: a stream's window is given back as its consumer takes what
  arrived (:meth:`Connection.consumed`), the connection's as data arrives
  unless more than ``h2state.MAX_BUFFERED`` bytes wait for consumers; a
  client sending beyond its windows breaks the protocol.

A broken rule ends the connection with GOAWAY and its code, and one line on
stderr naming it; the output is then closed and what the client still sends
is read (for a moment) and dropped, so that the GOAWAY reaches it. A stream
error resets that stream alone.

A stream's events go to the :class:`StreamHandler` that ``new_stream``
returns for its :class:`Request` (or raises :class:`StreamRefused`); they
are called in the reader thread and must not block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from .h2state import (
    ACK,
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    EV_DATA,
    EV_END,
    EV_REQUEST,
    EV_RESET,
    FRAME_HEADER,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    INTERNAL_ERROR,
    MAX_FRAME_SIZE,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    SETTINGS,
    U32,
    WINDOW_UPDATE,
    Event,
    ProtocolError,
    Request,
    ServerState,
    Stream,
    error_name,
    frame,
    frame_header,
)

__all__ = [
    "ACK", "CANCEL", "INTERNAL_ERROR", "Connection", "ProtocolError", "Request", "Stream",
    "StreamHandler", "StreamRefused", "StreamReset", "frame", "header_block",
]

log = logging.getLogger("kloset_sdk")

# Bytes of frames waiting for the writer beyond which senders of DATA wait.
MAX_QUEUED = 4 << 20
# Bytes of frames the protocol itself answers (acknowledgements, resets, window
# updates) waiting for the writer beyond which the client is deemed not to read
# what it asks for.
MAX_CONTROL_BACKLOG = 1 << 20
# After a GOAWAY: how long the writer may take to send it, and how long what
# the client still sends is read and dropped.
FLUSH_TIMEOUT = 2.0
LINGER = 2.0
_IOV_MAX = 512


class StreamReset(Exception):
    """The stream is gone: reset by the peer, or the connection closed."""


class StreamRefused(Exception):
    """Raised by ``new_stream``: the server takes no more streams now (REFUSED_STREAM)."""


class StreamHandler(Protocol):
    def data(self, payload: bytes | memoryview) -> None: ...
    def end(self) -> None: ...
    def reset(self) -> None: ...


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    """Headers as literal fields without indexing, names and values not Huffman-coded."""
    out = bytearray()
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v
    return bytes(out)


class Connection:
    """One HTTP/2 connection, server side, on ``rfd`` (from the peer) and ``wfd`` (to it)."""

    def __init__(self, rfd: int, wfd: int,
                 new_stream: Callable[[Stream, Request], StreamHandler],
                 max_streams: int = 256) -> None:
        self._rfd = rfd
        self._reader = open(rfd, "rb", buffering=1 << 20, closefd=False)  # noqa: SIM115
        self._wfd = wfd
        self._new_stream = new_stream
        self._state = ServerState(max_streams)
        self._lock = threading.Condition()  # state below, and waits for window or room
        self._out: deque[bytes | memoryview] = deque()
        self._queued = 0
        self._control = 0  # bytes of protocol answers queued since the writer last took them
        self._closed = False  # no more frames are queued
        self._writer = threading.Thread(target=self._write_loop, name="h2-writer", daemon=True)

    # -- the reader (the thread calling run) --

    def run(self) -> None:
        """Serve until the peer closes the connection or breaks the protocol."""
        self._writer.start()
        self._queue(self._state.preamble())
        try:
            preface = self._reader.read(len(PREFACE))
            if preface != PREFACE:
                if len(preface) < len(PREFACE) and PREFACE.startswith(preface):
                    raise EOFError
                raise ProtocolError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            self._read_frames()
        except EOFError:
            log.debug("connection closed by the peer")
        except ProtocolError as exc:
            log.warning("HTTP/2 connection error %s: %s", error_name(exc.code), exc)
            self._goaway(exc.code, str(exc))
        except OSError as exc:
            log.debug("connection lost: %s", exc)
        except Exception:
            log.exception("HTTP/2 connection failed")
            self._goaway(INTERNAL_ERROR, "internal error")
        finally:
            self.close()

    def close(self) -> None:
        """End every stream and stop writing."""
        with self._lock:
            if self._closed and not self._state.streams:
                return
            self._closed = True
            streams = list(self._state.streams.values())
            self._state.streams.clear()
            self._lock.notify_all()
        for stream in streams:
            stream.reset = stream.closed = True
            self._reset_handler(stream)

    @property
    def closed(self) -> bool:
        return self._closed

    def _read_frames(self) -> None:
        read = self._reader.read
        unpack = FRAME_HEADER.unpack
        state = self._state
        lock = self._lock
        dispatch = self._dispatch
        while True:
            head = read(9)
            if len(head) != 9:
                raise EOFError
            length_kind, flags, stream_id = unpack(head)
            length = length_kind >> 8
            if length > MAX_FRAME_SIZE:
                raise ProtocolError(FRAME_SIZE_ERROR, f"frame of {length} bytes "
                                    f"(the maximum is {MAX_FRAME_SIZE})")
            kind = length_kind & 0xFF
            payload = read(length) if length else b""
            if len(payload) != length:
                raise EOFError
            with lock:
                event = state.receive(kind, flags, stream_id & 0x7FFFFFFF, payload)
                if state.output:
                    self._control += sum(len(f) for f in state.output)
                    self._queue_locked(state.output)
                    state.output = []
                    if self._control > MAX_CONTROL_BACKLOG:
                        raise ProtocolError(ENHANCE_YOUR_CALM,
                                            "the client does not read what it asks for")
                elif kind in (WINDOW_UPDATE, SETTINGS):
                    lock.notify_all()  # senders may have room now
            if event is None:
                continue
            if event[0] == EV_DATA:  # the bulk of the frames: handled here
                handler = event[1].handler
                if handler is not None:
                    try:
                        if event[2]:
                            handler.data(event[2])
                        if event[3]:
                            handler.end()
                    except Exception:
                        self._handler_failed(event[1])
            else:
                dispatch(event)

    def _dispatch(self, event: Event) -> None:
        """A request, its end (trailers) or a reset, for the stream's handler."""
        what, stream = event[0], event[1]
        if what == EV_RESET:
            self._reset_handler(stream)
            return
        if what == EV_REQUEST:
            try:
                stream.handler = self._new_stream(stream, event[2])
            except StreamRefused:
                log.debug("stream %d refused by the server", stream.id)
                self.reset(stream, REFUSED_STREAM)
                return
        handler: StreamHandler | None = stream.handler
        if handler is not None and (what == EV_END or event[3]):
            try:
                handler.end()
            except Exception:
                self._handler_failed(stream)

    def _handler_failed(self, stream: Stream) -> None:
        log.exception("stream %d: its handler failed", stream.id)
        self.reset(stream, INTERNAL_ERROR)
        self._reset_handler(stream)

    def _reset_handler(self, stream: Stream) -> None:
        handler: StreamHandler | None = stream.handler
        if handler is not None:
            try:
                handler.reset()
            except Exception:
                log.exception("stream reset handling failed")

    # -- ending the connection on a protocol error --

    def _goaway(self, code: int, message: str) -> None:
        """Send GOAWAY (nothing after it), close our output, drop what still comes."""
        with self._lock:
            if self._closed:
                return
            goaway = frame(GOAWAY, 0, 0, U32.pack(self._state.last_stream) + U32.pack(code)
                           + message.encode()[:200])
            self._queue_locked([goaway])
            self._closed = True
        self.close()
        self._writer.join(FLUSH_TIMEOUT)
        with contextlib.suppress(OSError):
            self._end_output()
        self._linger()

    def _end_output(self) -> None:
        """Let the peer see the end of our output, the descriptor staying open."""
        if stat.S_ISSOCK(os.fstat(self._wfd).st_mode):
            import socket  # here only: its import costs milliseconds at every start

            with socket.socket(fileno=os.dup(self._wfd)) as sock, \
                    contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._wfd)  # the pipe's last write end goes: the peer reads EOF
        finally:
            os.close(devnull)

    def _linger(self) -> None:
        """Read and drop the peer's input until it closes, for a moment at most: a
        socket closed with unread input is reset, and the GOAWAY lost with it."""
        deadline = time.monotonic() + LINGER
        with contextlib.suppress(OSError, ValueError):
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([self._rfd], [], [], left)[0]:
                    return
                if not os.read(self._rfd, 1 << 16):
                    return

    # -- receiving: giving windows back --

    def consumed(self, stream: Stream, n: int, credited: int = 0) -> None:
        """``n`` bytes of ``stream``'s data were taken by its consumer, ``credited``
        of them given back to its window already by :meth:`credit`."""
        with self._lock:
            state = self._state
            state.consumed(stream, n, credited)
            if state.output:
                self._queue_locked(state.output)
                state.output = []

    def credit(self, stream: Stream, n: int) -> None:
        """Give ``n`` bytes of ``stream``'s data, still held by its consumer, back to
        the stream's window (a message larger than the window arrives so)."""
        with self._lock:
            state = self._state
            state.credit(stream, n)
            if state.output:
                self._queue_locked(state.output)
                state.output = []

    # -- sending (any thread) --

    def send_headers(self, stream: Stream, block: bytes, end_stream: bool = False) -> None:
        """Send a header block (response headers, or trailers with ``end_stream``)."""
        with self._lock:
            if stream.reset or self._closed:
                raise StreamReset
            parts: list[bytes] = []
            size = self._state.peer_frame_size
            first, rest = block[:size], block[size:]
            flags = (END_STREAM if end_stream else 0) | (0 if rest else END_HEADERS)
            parts.append(frame(HEADERS, flags, stream.id, first))
            while rest:
                piece, rest = rest[:size], rest[size:]
                parts.append(frame(CONTINUATION, 0 if rest else END_HEADERS, stream.id, piece))
            self._queue_locked(parts)
            if end_stream:
                self._end_local(stream)

    def send_data(self, stream: Stream, parts: Sequence[bytes | memoryview],
                  end_stream: bool = False) -> None:
        """Send the concatenation of ``parts`` on ``stream`` (without copying them),
        waiting for flow control as needed; ``end_stream`` ends the stream with it."""
        views = deque(memoryview(p) for p in parts if len(p))
        state = self._state
        while views:
            with self._lock:
                while True:
                    if stream.reset or self._closed:
                        raise StreamReset
                    room = min(state.send_window, stream.send_window)
                    if room > 0 and self._queued < MAX_QUEUED:
                        break
                    self._lock.wait()
                out: list[bytes | memoryview] = []
                size = state.peer_frame_size
                sent = 0
                while views and sent < room:
                    n = min(size, room - sent)
                    payload: list[memoryview] = []
                    length = 0
                    while views and length < n:
                        view = views[0]
                        take = min(len(view), n - length)
                        payload.append(view[:take])
                        length += take
                        if take == len(view):
                            views.popleft()
                        else:
                            views[0] = view[take:]
                    last = end_stream and not views
                    out.append(frame_header(DATA, END_STREAM if last else 0, stream.id, length))
                    out.extend(payload)
                    sent += length
                state.send_window -= sent
                stream.send_window -= sent
                self._queue_locked(out)
                if end_stream and not views:
                    self._end_local(stream)
                    return
        if end_stream:
            with self._lock:
                if stream.reset or self._closed:
                    raise StreamReset
                self._queue_locked([frame(DATA, END_STREAM, stream.id)])
                self._end_local(stream)

    def _end_local(self, stream: Stream) -> None:
        state = self._state
        state.end_local(stream)
        if state.output:
            self._queue_locked(state.output)
            state.output = []

    def reset(self, stream: Stream, code: int = CANCEL) -> None:
        """End ``stream`` abruptly (we give up on it)."""
        with self._lock:
            if stream.reset or self._closed:
                stream.reset = True
                return
            state = self._state
            state.reset(stream, code)
            if state.output:
                self._queue_locked(state.output)
                state.output = []
            self._lock.notify_all()

    # -- the writer thread --

    def _queue(self, parts: Sequence[bytes | memoryview]) -> None:
        with self._lock:
            self._queue_locked(parts)

    def _queue_locked(self, parts: Sequence[bytes | memoryview]) -> None:
        if self._closed:
            return  # nothing after GOAWAY, or once the peer is gone
        self._out.extend(parts)
        self._queued += sum(len(p) for p in parts)
        self._lock.notify_all()

    def _write_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._out and not self._closed:
                        self._lock.wait()
                    if not self._out:
                        return
                    parts = list(self._out)
                    self._out.clear()
                    self._control = 0
                for i in range(0, len(parts), _IOV_MAX):
                    self._write_all(parts[i:i + _IOV_MAX])
                with self._lock:
                    self._queued -= sum(len(p) for p in parts)
                    self._lock.notify_all()
        except OSError as exc:
            log.debug("writing to the peer failed: %s", exc)
            self.close()

    def _write_all(self, parts: list[bytes | memoryview]) -> None:
        while parts:
            n = os.writev(self._wfd, parts)
            while parts and n >= len(parts[0]):
                n -= len(parts[0])
                parts.pop(0)
            if n:
                parts[0] = memoryview(parts[0])[n:]
