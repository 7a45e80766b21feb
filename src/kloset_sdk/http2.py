"""HTTP/2 (RFC 9113), server side: what a gRPC server on two pipes needs.

plakar speaks plaintext HTTP/2 with prior knowledge over the plugin's stdin
and stdout. This module reads frames from one descriptor in the thread that
calls :meth:`Connection.run`, and writes frames to the other from a writer
thread that takes them from a queue in order, many per system call. Header
blocks are decoded with the ``hpack`` library; the few header blocks a gRPC
server sends are literals without indexing (:func:`header_block`), so the
peer's decoding table is never touched.

Flow control, both ways:
- sending: DATA never exceeds the peer's connection and stream windows, nor
  its frame size; senders wait for WINDOW_UPDATE; bytes queued for the writer
  are capped too (``MAX_QUEUED``), so memory stays bounded when plakar reads
  slowly;
- receiving: the connection window is given back as data arrives; a
  stream's, as its consumer takes what arrived (:meth:`Connection.consumed`),
  withheld while more than ``MAX_BUFFERED`` bytes wait for it.

A stream's events go to the :class:`StreamHandler` that ``new_stream``
returns for its request headers; they are called in the reader thread and
must not block.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from hpack import Decoder
from hpack.exceptions import HPACKError

log = logging.getLogger("kloset_sdk")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 5, 6, 7, 8, 9

DEFAULT_WINDOW = 65_535
DEFAULT_FRAME_SIZE = 16_384
MAX_WINDOW = 2**31 - 1
# What we let plakar send ahead: per stream (a Put or Export stream carries
# 1 MiB chunks) and for the whole connection.
STREAM_WINDOW = 4 << 20
CONNECTION_WINDOW = 16 << 20
# Bytes arrived on one stream and not yet taken by its consumer beyond which
# its window is no longer given back.
MAX_BUFFERED = 4 << 20
# Bytes of frames waiting for the writer beyond which senders of DATA wait.
MAX_QUEUED = 4 << 20
MAX_HEADER_BLOCK = 1 << 20
_HEADER = struct.Struct(">IBI")  # length (24 bits) and type, flags, stream id
_U32 = struct.Struct(">I")
_IOV_MAX = 512


class ConnectionError_(Exception):
    """A fatal protocol error: the connection ends with GOAWAY ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class StreamReset(Exception):
    """The stream is gone: reset by the peer, or the connection closed."""


class StreamHandler(Protocol):
    def data(self, payload: bytes | memoryview) -> None: ...
    def end(self) -> None: ...
    def reset(self) -> None: ...


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(len(payload) << 8 | kind, flags, stream) + payload


def _frame_header(kind: int, flags: int, stream: int, length: int) -> bytes:
    return _HEADER.pack(length << 8 | kind, flags, stream)


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


class Stream:
    """One stream's state as the connection sees it."""

    __slots__ = (
        "buffered",
        "handler",
        "id",
        "local_closed",
        "remote_closed",
        "reset",
        "send_window",
        "unacknowledged",
        "withheld",
    )

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.handler: StreamHandler | None = None
        self.send_window = send_window
        self.remote_closed = False  # END_STREAM received
        self.local_closed = False  # END_STREAM sent
        self.reset = False
        # Bytes consumed, not yet given back in a WINDOW_UPDATE (held back while
        # more than MAX_BUFFERED bytes wait for the consumer).
        self.unacknowledged = 0
        self.buffered = 0  # bytes received, not consumed


class Connection:
    """One HTTP/2 connection, server side, on ``rfd`` (from the peer) and ``wfd`` (to it)."""

    def __init__(self, rfd: int, wfd: int,
                 new_stream: Callable[[Stream, list[tuple[str, str]]], StreamHandler]) -> None:
        self._reader = open(rfd, "rb", buffering=1 << 20, closefd=False)  # noqa: SIM115
        self._wfd = wfd
        self._new_stream = new_stream
        self._decoder = Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_BLOCK
        self._lock = threading.Condition()  # state below, and waits for window or room
        self._streams: dict[int, Stream] = {}
        self._last_stream = 0
        self._send_window = DEFAULT_WINDOW  # the peer's connection window
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_frame_size = DEFAULT_FRAME_SIZE
        self._received_unacknowledged = 0  # connection window to give back
        self._out: deque[bytes | memoryview] = deque()
        self._queued = 0
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="h2-writer", daemon=True)

    # -- the reader (the thread calling run) --

    def run(self) -> None:
        """Serve until the peer closes the connection or breaks the protocol."""
        self._writer.start()
        self._queue([frame(SETTINGS, 0, 0, b"".join(
            struct.pack(">HI", k, v) for k, v in (
                (S_ENABLE_PUSH, 0), (S_MAX_CONCURRENT_STREAMS, 10_000),
                (S_INITIAL_WINDOW_SIZE, STREAM_WINDOW)))),
            frame(WINDOW_UPDATE, 0, 0, _U32.pack(CONNECTION_WINDOW - DEFAULT_WINDOW))])
        try:
            if self._read(len(PREFACE)) != PREFACE:
                raise ConnectionError_(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            self._read_frames()
        except EOFError:
            log.debug("connection closed by the peer")
        except ConnectionError_ as exc:
            log.warning("HTTP/2 protocol error: %s", exc)
            self._queue([frame(GOAWAY, 0, 0, _U32.pack(self._last_stream) +
                               _U32.pack(exc.code) + str(exc).encode()[:200])])
        except OSError as exc:
            log.debug("connection lost: %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        """End every stream and stop writing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            streams = list(self._streams.values())
            self._streams.clear()
            self._lock.notify_all()
        for stream in streams:
            self._reset_handler(stream)

    @property
    def closed(self) -> bool:
        return self._closed

    def _read(self, n: int) -> bytes:
        data = self._reader.read(n)
        if len(data) != n:
            raise EOFError
        return data

    def _read_frames(self) -> None:
        read = self._read
        while True:
            head = read(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            stream_id = _U32.unpack_from(head, 5)[0] & 0x7FFFFFFF
            payload = read(length) if length else b""
            if kind == DATA:
                self._on_data(stream_id, flags, payload)
            elif kind == HEADERS:
                self._on_headers(stream_id, flags, payload)
            elif kind == SETTINGS:
                self._on_settings(flags, payload)
            elif kind == WINDOW_UPDATE:
                self._on_window_update(stream_id, payload)
            elif kind == PING:
                if not flags & ACK:
                    if len(payload) != 8:
                        raise ConnectionError_(FRAME_SIZE_ERROR, "PING of a wrong size")
                    self._queue([frame(PING, ACK, 0, payload)])
            elif kind == RST_STREAM:
                self._on_reset(stream_id)
            elif kind == GOAWAY:
                log.debug("the peer sends GOAWAY")
            elif kind == CONTINUATION:
                raise ConnectionError_(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            elif kind == PUSH_PROMISE:
                raise ConnectionError_(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            # PRIORITY and unknown frame types are ignored.

    def _on_data(self, stream_id: int, flags: int, payload: bytes) -> None:
        flow = len(payload)
        with self._lock:
            # The connection window is given back at once: streams bound themselves.
            self._received_unacknowledged += flow
            if self._received_unacknowledged >= CONNECTION_WINDOW // 4:
                self._queue_locked([frame(WINDOW_UPDATE, 0, 0,
                                          _U32.pack(self._received_unacknowledged))])
                self._received_unacknowledged = 0
            stream = self._streams.get(stream_id)
            if stream is None or stream.remote_closed or stream.reset:
                return  # a stream we are done with (we reset it, or it ended)
            data: bytes | memoryview = payload
            stream.buffered += flow
            if flags & PADDED:
                pad = payload[0] if payload else 0
                if pad >= len(payload):
                    raise ConnectionError_(PROTOCOL_ERROR, "padding longer than the frame")
                data = memoryview(payload)[1:len(payload) - pad]
                self._consumed_locked(stream, flow - len(data))  # the padding: taken now
            handler = stream.handler
        if handler is not None and data:
            try:
                handler.data(data)
            except Exception:
                log.exception("stream %d: data handling failed", stream.id)
                self.reset(stream, INTERNAL_ERROR)
                self._reset_handler(stream)
                return
        if flags & END_STREAM:
            self._remote_end(stream)

    def _on_headers(self, stream_id: int, flags: int, payload: bytes) -> None:
        block = payload
        start = 0
        pad = 0
        if flags & PADDED:
            pad, start = payload[0], 1
        if flags & PRIORITY_FLAG:
            start += 5
        block = payload[start:len(payload) - pad]
        while not flags & END_HEADERS:
            head = self._read(9)
            length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            if kind != CONTINUATION or _U32.unpack_from(head, 5)[0] & 0x7FFFFFFF != stream_id:
                raise ConnectionError_(PROTOCOL_ERROR, "header block interrupted")
            block += self._read(length)
            if len(block) > MAX_HEADER_BLOCK:
                raise ConnectionError_(PROTOCOL_ERROR, "header block too large")
        try:
            headers = [(str(name), str(value)) for name, value in self._decoder.decode(block)]
        except HPACKError as exc:
            raise ConnectionError_(COMPRESSION_ERROR, f"bad header block: {exc}") from None
        with self._lock:
            stream = self._streams.get(stream_id)
            if stream is None:
                if stream_id % 2 == 0 or stream_id <= self._last_stream:
                    return  # trailers of a stream we closed, or a bad id: nothing to do
                self._last_stream = stream_id
                stream = Stream(stream_id, self._peer_initial_window)
                self._streams[stream_id] = stream
                created = True
            else:
                created = False
        if created:
            stream.handler = self._new_stream(stream, headers)
        if flags & END_STREAM:
            self._remote_end(stream)

    def _remote_end(self, stream: Stream) -> None:
        with self._lock:
            if stream.remote_closed:
                return
            stream.remote_closed = True
            self._forget_if_done(stream)
            handler = stream.handler
        if handler is not None:
            handler.end()

    def _on_settings(self, flags: int, payload: bytes) -> None:
        if flags & ACK:
            return
        if len(payload) % 6:
            raise ConnectionError_(FRAME_SIZE_ERROR, "SETTINGS of a wrong size")
        with self._lock:
            for i in range(0, len(payload), 6):
                key, value = struct.unpack_from(">HI", payload, i)
                if key == S_INITIAL_WINDOW_SIZE:
                    if value > MAX_WINDOW:
                        raise ConnectionError_(FLOW_CONTROL_ERROR, "window too large")
                    delta = value - self._peer_initial_window
                    self._peer_initial_window = value
                    for stream in self._streams.values():
                        stream.send_window += delta
                elif key == S_MAX_FRAME_SIZE:
                    if not DEFAULT_FRAME_SIZE <= value <= 2**24 - 1:
                        raise ConnectionError_(PROTOCOL_ERROR, "invalid maximum frame size")
                    self._peer_frame_size = value
                elif key == S_HEADER_TABLE_SIZE:
                    pass  # our header blocks never index anything
            self._queue_locked([frame(SETTINGS, ACK, 0)])
            self._lock.notify_all()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(FRAME_SIZE_ERROR, "WINDOW_UPDATE of a wrong size")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        with self._lock:
            if stream_id == 0:
                self._send_window += increment
            else:
                stream = self._streams.get(stream_id)
                if stream is None:
                    return
                stream.send_window += increment
            self._lock.notify_all()

    def _on_reset(self, stream_id: int) -> None:
        with self._lock:
            stream = self._streams.pop(stream_id, None)
            if stream is None:
                return
            stream.reset = True
            self._lock.notify_all()
        self._reset_handler(stream)

    def _reset_handler(self, stream: Stream) -> None:
        stream.reset = True
        if stream.handler is not None:
            try:
                stream.handler.reset()
            except Exception:
                log.exception("stream reset handling failed")

    # -- receiving: giving windows back --

    def consumed(self, stream: Stream, n: int) -> None:
        """``n`` bytes of ``stream``'s data were taken by its consumer."""
        with self._lock:
            self._consumed_locked(stream, n)

    def _consumed_locked(self, stream: Stream, n: int) -> None:
        stream.buffered -= n
        stream.unacknowledged += n
        if stream.buffered > MAX_BUFFERED or stream.remote_closed or stream.reset:
            return
        if stream.unacknowledged >= STREAM_WINDOW // 4:
            self._queue_locked([frame(WINDOW_UPDATE, 0, stream.id,
                                      _U32.pack(stream.unacknowledged))])
            stream.unacknowledged = 0

    # -- sending (any thread) --

    def send_headers(self, stream: Stream, block: bytes, end_stream: bool = False) -> None:
        """Send a header block (response headers, or trailers with ``end_stream``)."""
        with self._lock:
            if stream.reset or self._closed:
                raise StreamReset
            parts: list[bytes] = []
            size = self._peer_frame_size
            first, rest = block[:size], block[size:]
            flags = (END_STREAM if end_stream else 0) | (0 if rest else END_HEADERS)
            parts.append(frame(HEADERS, flags, stream.id, first))
            while rest:
                piece, rest = rest[:size], rest[size:]
                parts.append(frame(CONTINUATION, 0 if rest else END_HEADERS, stream.id, piece))
            self._queue_locked(parts)
            if end_stream:
                stream.local_closed = True
                if not stream.remote_closed:
                    # gRPC: a server that is done tells the client to stop sending.
                    self._queue_locked([frame(RST_STREAM, 0, stream.id, _U32.pack(NO_ERROR))])
                    stream.remote_closed = True
                self._forget_if_done(stream)

    def send_data(self, stream: Stream, parts: Sequence[bytes | memoryview]) -> None:
        """Send the concatenation of ``parts`` on ``stream`` (without copying them),
        waiting for flow control as needed."""
        views = deque(memoryview(p) for p in parts if len(p))
        while views:
            with self._lock:
                while True:
                    if stream.reset or self._closed:
                        raise StreamReset
                    room = min(self._send_window, stream.send_window)
                    if room > 0 and self._queued < MAX_QUEUED:
                        break
                    self._lock.wait()
                out: list[bytes | memoryview] = []
                size = self._peer_frame_size
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
                    out.append(_frame_header(DATA, 0, stream.id, length))
                    out.extend(payload)
                    sent += length
                self._send_window -= sent
                stream.send_window -= sent
                self._queue_locked(out)

    def reset(self, stream: Stream, code: int = CANCEL) -> None:
        """End ``stream`` abruptly (we give up on it)."""
        with self._lock:
            if stream.reset or self._closed:
                return
            stream.reset = True
            self._streams.pop(stream.id, None)
            self._queue_locked([frame(RST_STREAM, 0, stream.id, _U32.pack(code))])
            self._lock.notify_all()

    def _forget_if_done(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._streams.pop(stream.id, None)

    # -- the writer thread --

    def _queue(self, parts: Sequence[bytes | memoryview]) -> None:
        with self._lock:
            self._queue_locked(parts)

    def _queue_locked(self, parts: Sequence[bytes | memoryview]) -> None:
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
