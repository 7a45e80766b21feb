"""The rules of HTTP/2 (RFC 9113) on the server side, without I/O or threads.

:class:`ServerState` is told each frame read from the client
(:meth:`ServerState.receive`) and answers what it means for the streams (an
event for their handlers, or nothing) and which frames the protocol itself
requires in reply, left in :attr:`ServerState.output` (SETTINGS and PING
acknowledgements, RST_STREAM, WINDOW_UPDATE). It also keeps the flow-control
windows both ways and the streams' states for what the server sends. The
connection (:mod:`~kloset_sdk._wire.http2`) reads and writes, and calls it under
its lock.

A frame that breaks a rule is, as RFC 9113 section 5.4 says, either a
connection error, raised as :class:`ProtocolError` (the connection ends with
GOAWAY and that code), or a stream error: that stream alone is reset
(RST_STREAM with the code) and its handler told, and the connection goes on.
Header blocks are decoded with the ``hpack`` library (RFC 7541) whatever
happens to their stream, so that its table stays the client's.
"""

from __future__ import annotations

import logging
import re
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from hpack import Decoder
from hpack.exceptions import HPACKError, OversizedHeaderListError

log = logging.getLogger("kloset_sdk")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
FRAME_NAMES = ("DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE",
               "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION")
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)
ERROR_NAMES = ("NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
               "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM",
               "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
               "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED")
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, _, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, _, ENHANCE_YOUR_CALM = range(12)

DEFAULT_WINDOW = 65_535
DEFAULT_FRAME_SIZE = 16_384
MAX_WINDOW = 2**31 - 1
MAX_FRAME_SIZE_LIMIT = 2**24 - 1
# The largest frame we accept: we keep SETTINGS_MAX_FRAME_SIZE at its default
# (plakar's gRPC client never sends larger DATA frames anyway).
MAX_FRAME_SIZE = DEFAULT_FRAME_SIZE
# What we let plakar send ahead: per stream (a Put or Export stream carries
# 1 MiB chunks) and for the whole connection.
STREAM_WINDOW = 4 << 20
CONNECTION_WINDOW = 16 << 20
# Bytes received on all streams and not yet taken by their consumers beyond
# which the connection window is no longer given back: with the streams'
# own windows, this bounds what a client can make us hold.
MAX_BUFFERED = 32 << 20
# A request's decoded header list (advertised as SETTINGS_MAX_HEADER_LIST_SIZE),
# and the frames its block may span.
MAX_HEADER_LIST = 1 << 20
MAX_HEADER_FRAMES = 1024
# Closed streams remembered, to tell a frame that was in flight when we reset
# a stream (ignored) from one sent on a stream the client knows is closed.
CLOSED_MEMORY = 1024
# Windows given back in WINDOW_UPDATEs of at least this much.
_GIVE_BACK = CONNECTION_WINDOW // 4
_STREAM_GIVE_BACK = STREAM_WINDOW // 4

U32 = struct.Struct(">I")
FRAME_HEADER = struct.Struct(">IBI")  # length (24 bits) and type, flags, stream id
_SETTING = struct.Struct(">HI")

# How a stream we no longer track was closed.
_RESET_BY_US, _RESET_BY_PEER, _ENDED = range(3)

# Events for the streams' handlers, as tuples (kind, stream, ...).
EV_REQUEST = 0  # (EV_REQUEST, stream, request, end_stream): a new request
EV_DATA = 1  # (EV_DATA, stream, data, end_stream)
EV_END = 2  # (EV_END, stream): the request ended (trailers)
EV_RESET = 3  # (EV_RESET, stream): the stream is gone (client reset, or stream error)
Event = tuple[Any, ...]


class ProtocolError(Exception):
    """A connection error: the connection ends with GOAWAY ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def error_name(code: int) -> str:
    return ERROR_NAMES[code] if code < len(ERROR_NAMES) else f"error 0x{code:x}"


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(len(payload) << 8 | kind, flags, stream) + payload


def frame_header(kind: int, flags: int, stream: int, length: int) -> bytes:
    return FRAME_HEADER.pack(length << 8 | kind, flags, stream)


def _rst(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, U32.pack(code))


def _window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, U32.pack(increment))


# -- header fields (RFC 9113 section 8.2 and 8.3) --

# A name: no control character, space, uppercase letter, DEL or non-ASCII byte.
_NAME = re.compile(rb"[\x21-\x40\x5b-\x7e]+")
# A value: no NUL, CR or LF, and no space or tab at either end.
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"))
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path"))

Headers = list[tuple[bytes, bytes]]


# Fields found valid: a client sends the same ones with every request.
_VALID: set[tuple[bytes, bytes]] = set()
_VALID_MAX = 4096
_VALID_SIZE = 256  # bytes of a field kept


def _field_problem(name: bytes, value: bytes) -> str | None:
    if _NAME.fullmatch(name) is None:
        return f"invalid header name {name[:40]!r}"
    if _BAD_VALUE.search(value) is not None:
        return f"invalid value of header {name[:40]!r}"
    if name in _CONNECTION_SPECIFIC:
        return f"connection-specific header {name.decode()!r}"
    if name == b"te" and value != b"trailers":
        return "te header other than 'trailers'"
    return None


def _valid(field: tuple[bytes, bytes]) -> None:
    if len(field[0]) + len(field[1]) > _VALID_SIZE:
        return
    if len(_VALID) >= _VALID_MAX:
        _VALID.clear()
    _VALID.add(field)


class Request:
    """A well-formed request's header list, and what a server looks up in it."""

    __slots__ = ("content_length", "content_type", "headers", "method", "path")

    def __init__(self, headers: Headers, method: bytes, path: str, content_type: bytes,
                 content_length: int | None) -> None:
        self.headers = headers
        self.method = method
        self.path = path  # as text (Latin-1: any byte)
        self.content_type = content_type
        self.content_length = content_length


# Requests already parsed, by header list: a client sends the same list with
# every call of a method, so most lists are checked once. Small lists only.
_SEEN: dict[tuple[tuple[bytes, bytes], ...], Request] = {}
_SEEN_MAX = 256
_SEEN_SIZE = 4096


def parse_request(headers: Headers) -> Request | str:
    """The request ``headers`` make, or why they make no well-formed request."""
    key = tuple(headers)
    found = _SEEN.get(key)
    if found is not None:
        return found
    parsed = _parse_request(headers)
    if isinstance(parsed, Request) and sum(len(n) + len(v) for n, v in key) <= _SEEN_SIZE:
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[key] = parsed
    return parsed


def _parse_request(headers: Headers) -> Request | str:
    pseudo: dict[bytes, bytes] = {}
    regular = False
    content_type = b""
    length: int | None = None
    for field in headers:
        name, value = field
        if name[:1] == b":":
            if regular:
                return f"pseudo-header {name.decode(errors='replace')!r} after a regular header"
            if name not in _REQUEST_PSEUDO:
                return f"pseudo-header {name[:40].decode(errors='replace')!r} in a request"
            if name in pseudo:
                return f"duplicated pseudo-header {name.decode()!r}"
            if field not in _VALID:
                if _BAD_VALUE.search(value) is not None:
                    return f"invalid value of {name.decode()!r}"
                _valid(field)
            pseudo[name] = value
            continue
        regular = True
        if field not in _VALID:
            problem = _field_problem(name, value)
            if problem is not None:
                return problem
            _valid(field)
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                return "invalid content-length"
            length = int(value)
    method = pseudo.get(b":method")
    if method is None:
        return "no :method"
    if method == b"CONNECT":
        if b":authority" not in pseudo or b":scheme" in pseudo or b":path" in pseudo:
            return "CONNECT request without :authority alone"
    elif b":scheme" not in pseudo:
        return "no :scheme"
    elif not pseudo.get(b":path"):
        return "no :path" if b":path" not in pseudo else "empty :path"
    return Request(headers, method, pseudo.get(b":path", b"").decode("latin-1"), content_type,
                   length)


def trailers_problem(headers: Headers) -> str | None:
    """Why ``headers`` is not a well-formed trailer list, or None."""
    for name, value in headers:
        if name[:1] == b":":
            return f"pseudo-header {name[:40].decode(errors='replace')!r} in trailers"
        problem = _field_problem(name, value)
        if problem is not None:
            return problem
    return None


class Stream:
    """One stream's state as the connection sees it."""

    __slots__ = (
        "buffered",
        "closed",
        "content_length",
        "handler",
        "id",
        "local_closed",
        "received",
        "recv_window",
        "remote_closed",
        "reset",
        "send_window",
        "unacknowledged",
    )

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.handler: Any = None  # the connection's business
        self.send_window = send_window  # what the client lets us send
        self.recv_window = STREAM_WINDOW  # what we let the client send
        self.remote_closed = False  # END_STREAM received
        self.local_closed = False  # END_STREAM sent
        self.reset = False  # reset by either side: gone
        self.closed = False  # no longer in the connection's table
        # Bytes consumed, not yet given back in a WINDOW_UPDATE.
        self.unacknowledged = 0
        self.buffered = 0  # bytes received, not consumed
        self.content_length: int | None = None  # announced by the request
        self.received = 0  # body bytes, counted only when content_length is set


class ServerState:
    """One HTTP/2 connection's state, server side (see the module's docstring)."""

    def __init__(self, max_streams: int) -> None:
        self.output: list[bytes] = []  # frames to send, in order
        self.streams: dict[int, Stream] = {}
        self.max_streams = max_streams
        self.last_stream = 0  # highest stream id the client opened (or we closed while idle)
        self.send_window = DEFAULT_WINDOW  # the client's connection window
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_frame_size = DEFAULT_FRAME_SIZE
        self.recv_window = DEFAULT_WINDOW  # the connection window we give the client
        self.buffered = 0  # bytes received on all streams, not consumed
        self.peer_goaway = False
        self._unacknowledged = 0  # connection window to give back
        self._closed: OrderedDict[int, int] = OrderedDict()  # recently closed stream -> how
        self._block: bytearray | None = None  # a header block being received
        self._block_stream = 0
        self._block_flags = 0  # of its HEADERS frame
        self._block_self_dependent = False
        self._block_frames = 0
        self._decoder = Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_LIST
        # Until the client's first SETTINGS, nothing else is accepted.
        self.receive: Callable[[int, int, int, bytes], Event | None] = self._receive_first

    def preamble(self) -> list[bytes]:
        """Our side of the connection preface: SETTINGS, and the connection window."""
        settings = b"".join(_SETTING.pack(k, v) for k, v in (
            (S_ENABLE_PUSH, 0), (S_MAX_CONCURRENT_STREAMS, self.max_streams),
            (S_INITIAL_WINDOW_SIZE, STREAM_WINDOW), (S_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST)))
        self.recv_window = CONNECTION_WINDOW
        return [frame(SETTINGS, 0, 0, settings),
                _window_update(0, CONNECTION_WINDOW - DEFAULT_WINDOW)]

    # -- receiving --

    def _receive_first(self, kind: int, flags: int, stream_id: int,
                       payload: bytes) -> Event | None:
        if kind != SETTINGS or flags & ACK:
            raise ProtocolError(PROTOCOL_ERROR, "the client preface is not followed by SETTINGS")
        self.receive = self._receive
        return self._receive(kind, flags, stream_id, payload)

    def _receive(self, kind: int, flags: int, stream_id: int, payload: bytes) -> Event | None:
        """What the frame means (an event for a stream's handler, or None); the frames
        it calls for are appended to ``output``. Raises :class:`ProtocolError`."""
        if self._block is not None:
            return self._continuation(kind, flags, stream_id, payload)
        if kind == DATA:
            return self._data(flags, stream_id, payload)
        if kind == HEADERS:
            return self._headers(flags, stream_id, payload)
        if kind == WINDOW_UPDATE:
            return self._window_update(stream_id, payload)
        if kind == RST_STREAM:
            return self._rst_stream(stream_id, payload)
        if kind == SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == PING:
            if stream_id:
                raise ProtocolError(PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise ProtocolError(FRAME_SIZE_ERROR, f"PING of {len(payload)} bytes, not 8")
            if not flags & ACK:
                self.output.append(frame(PING, ACK, 0, payload))
        elif kind == PRIORITY:
            return self._priority(stream_id, payload)
        elif kind == GOAWAY:
            if stream_id:
                raise ProtocolError(PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(payload) < 8:
                raise ProtocolError(FRAME_SIZE_ERROR, f"GOAWAY of {len(payload)} bytes")
            self.peer_goaway = True
            log.debug("the client sends GOAWAY (%s)", error_name(U32.unpack_from(payload, 4)[0]))
        elif kind == CONTINUATION:
            raise ProtocolError(PROTOCOL_ERROR, "CONTINUATION outside a header block")
        elif kind == PUSH_PROMISE:
            raise ProtocolError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # Frames of unknown types are ignored (RFC 9113 section 5.5).
        return None

    def _data(self, flags: int, stream_id: int, payload: bytes) -> Event | None:
        if not stream_id:
            raise ProtocolError(PROTOCOL_ERROR, "DATA on stream 0")
        n = len(payload)
        data: bytes | memoryview = payload
        if flags & PADDED:
            if not n or payload[0] >= n:
                raise ProtocolError(PROTOCOL_ERROR, "DATA padding as long as the frame")
            data = memoryview(payload)[1:n - payload[0]]
        if n > self.recv_window:
            raise ProtocolError(FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        # The whole frame counts against the windows (RFC 9113 section 6.9.1).
        self.recv_window -= n
        self._unacknowledged += n
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_closed:
            self._give_back()
            return self._not_open(stream, stream_id, "DATA")
        if n > stream.recv_window:
            raise ProtocolError(FLOW_CONTROL_ERROR, f"DATA beyond the window of stream {stream_id}")
        stream.recv_window -= n
        taken = n if data is payload else len(data)
        stream.buffered += n
        self.buffered += n
        if taken != n:
            self.consumed(stream, n - taken)  # the padding: taken now
        if self._unacknowledged >= _GIVE_BACK:  # (inline: every DATA frame comes here)
            self._give_back()
        end = flags & END_STREAM
        if stream.content_length is not None:
            stream.received += taken
            if stream.received > stream.content_length or \
                    (end and stream.received != stream.content_length):
                return self._stream_error(stream, PROTOCOL_ERROR,
                                          "body length differs from content-length")
        if end:
            self._remote_end(stream)
        elif not taken:
            return None
        return (EV_DATA, stream, data, end)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> Event | None:
        if not stream_id:
            raise ProtocolError(PROTOCOL_ERROR, "HEADERS on stream 0")
        start, end = 0, len(payload)
        if flags & PADDED:
            if not end:
                raise ProtocolError(FRAME_SIZE_ERROR, "HEADERS too short for its pad length")
            start, end = 1, end - payload[0]
        depends_on_itself = False
        if flags & PRIORITY_FLAG:
            if len(payload) - start < 5:
                raise ProtocolError(FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            depends_on_itself = U32.unpack_from(payload, start)[0] & 0x7FFFFFFF == stream_id
            start += 5
        if end < start:
            raise ProtocolError(PROTOCOL_ERROR, "HEADERS padding longer than the frame")
        if flags & END_HEADERS:
            return self._header_block(flags, stream_id, payload[start:end], depends_on_itself)
        self._block = bytearray(payload[start:end])
        self._block_stream = stream_id
        self._block_flags = flags
        self._block_self_dependent = depends_on_itself
        self._block_frames = 1
        return None

    def _continuation(self, kind: int, flags: int, stream_id: int,
                      payload: bytes) -> Event | None:
        assert self._block is not None
        if kind != CONTINUATION or stream_id != self._block_stream:
            name = FRAME_NAMES[kind] if kind < len(FRAME_NAMES) else f"frame of type {kind}"
            raise ProtocolError(PROTOCOL_ERROR,
                                f"{name} inside the header block of stream {self._block_stream}")
        self._block += payload
        self._block_frames += 1
        if len(self._block) > MAX_HEADER_LIST or self._block_frames > MAX_HEADER_FRAMES:
            raise ProtocolError(ENHANCE_YOUR_CALM, "header block too large")
        if not flags & END_HEADERS:
            return None
        block, self._block = bytes(self._block), None
        return self._header_block(self._block_flags, stream_id, block,
                                  self._block_self_dependent)

    def _header_block(self, flags: int, stream_id: int, block: bytes,
                      depends_on_itself: bool) -> Event | None:
        try:
            headers: Headers = self._decoder.decode(block, raw=True)  # type: ignore[assignment]
        except OversizedHeaderListError:
            raise ProtocolError(ENHANCE_YOUR_CALM,
                                f"header list larger than {MAX_HEADER_LIST} bytes") from None
        except HPACKError as exc:
            raise ProtocolError(COMPRESSION_ERROR, f"bad header block: {exc}") from None
        end = bool(flags & END_STREAM)
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers
            if stream.remote_closed:
                return self._stream_error(stream, STREAM_CLOSED, "HEADERS after END_STREAM")
            if not end:
                return self._stream_error(stream, PROTOCOL_ERROR,
                                          "second HEADERS without END_STREAM")
            problem = trailers_problem(headers)
            if problem is None and stream.content_length is not None and \
                    stream.received != stream.content_length:
                problem = "body length differs from content-length"
            if problem is not None:
                return self._stream_error(stream, PROTOCOL_ERROR, problem)
            self._remote_end(stream)
            return (EV_END, stream)
        if not stream_id % 2:
            raise ProtocolError(PROTOCOL_ERROR, f"HEADERS on even-numbered stream {stream_id}")
        if stream_id <= self.last_stream:
            return self._not_open(None, stream_id, "HEADERS")
        self.last_stream = stream_id
        request = "stream depends on itself" if depends_on_itself else parse_request(headers)
        if isinstance(request, str) or (end and request.content_length):
            return self._stream_error(stream_id, PROTOCOL_ERROR, request if isinstance(
                request, str) else "body length differs from content-length")
        if len(self.streams) >= self.max_streams:
            self._refuse(stream_id)
            return None
        stream = Stream(stream_id, self.peer_initial_window)
        stream.content_length = request.content_length
        self.streams[stream_id] = stream
        if end:
            stream.remote_closed = True
        return (EV_REQUEST, stream, request, end)

    def _not_open(self, stream: Stream | None, stream_id: int, what: str) -> Event | None:
        """A DATA or HEADERS frame for a stream that is not open for them."""
        if stream is not None:  # half-closed (remote)
            return self._stream_error(stream, STREAM_CLOSED, f"{what} after END_STREAM")
        if stream_id > self.last_stream or not stream_id % 2:
            raise ProtocolError(PROTOCOL_ERROR, f"{what} on idle stream {stream_id}")
        how = self._closed.get(stream_id)
        if how == _RESET_BY_US:
            return None  # sent before the client knew
        if how == _ENDED:
            raise ProtocolError(STREAM_CLOSED, f"{what} on closed stream {stream_id}")
        if how is None and what == "HEADERS":
            raise ProtocolError(PROTOCOL_ERROR, f"HEADERS reopening stream {stream_id} "
                                f"(streams are at {self.last_stream})")
        return self._stream_error(stream_id, STREAM_CLOSED, f"{what} on closed stream {stream_id}")

    def _window_update(self, stream_id: int, payload: bytes) -> Event | None:
        if len(payload) != 4:
            raise ProtocolError(FRAME_SIZE_ERROR, f"WINDOW_UPDATE of {len(payload)} bytes")
        increment = U32.unpack(payload)[0] & 0x7FFFFFFF
        if not stream_id:
            if not increment:
                raise ProtocolError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise ProtocolError(FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            return None
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id > self.last_stream or not stream_id % 2:
                raise ProtocolError(PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {stream_id}")
            return None  # closed: it may have been sent before the client knew
        if not increment:
            return self._stream_error(stream, PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            return self._stream_error(stream, FLOW_CONTROL_ERROR, "stream window above 2^31-1")
        return None

    def _rst_stream(self, stream_id: int, payload: bytes) -> Event | None:
        if not stream_id:
            raise ProtocolError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise ProtocolError(FRAME_SIZE_ERROR, f"RST_STREAM of {len(payload)} bytes")
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id > self.last_stream or not stream_id % 2:
                raise ProtocolError(PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}")
            return None
        self._forget(stream, _RESET_BY_PEER)
        return (EV_RESET, stream)

    def _priority(self, stream_id: int, payload: bytes) -> Event | None:
        # Priorities are not acted upon (RFC 9113 deprecates them); only checked.
        if not stream_id:
            raise ProtocolError(PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            return self._stream_error(self.streams.get(stream_id) or stream_id, FRAME_SIZE_ERROR,
                                      f"PRIORITY of {len(payload)} bytes")
        if U32.unpack_from(payload)[0] & 0x7FFFFFFF == stream_id:
            return self._stream_error(self.streams.get(stream_id) or stream_id, PROTOCOL_ERROR,
                                      "stream depends on itself")
        return None

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise ProtocolError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise ProtocolError(FRAME_SIZE_ERROR, "SETTINGS acknowledgement with a payload")
            return
        if len(payload) % 6:
            raise ProtocolError(FRAME_SIZE_ERROR, f"SETTINGS of {len(payload)} bytes")
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError(FLOW_CONTROL_ERROR, "initial window size above 2^31-1")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise ProtocolError(FLOW_CONTROL_ERROR,
                                            f"window of stream {stream.id} above 2^31-1")
            elif key == S_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT:
                    raise ProtocolError(PROTOCOL_ERROR, f"invalid maximum frame size {value}")
                self.peer_frame_size = value
            elif key == S_ENABLE_PUSH and value > 1:
                raise ProtocolError(PROTOCOL_ERROR, f"invalid ENABLE_PUSH {value}")
            # The others do not concern us: our header blocks never use the
            # client's table, we open no streams, and send small header lists.
        self.output.append(frame(SETTINGS, ACK, 0))

    # -- stream ends and errors --

    def _remote_end(self, stream: Stream) -> None:
        stream.remote_closed = True
        if stream.local_closed:
            self._forget(stream, _ENDED)

    def _forget(self, stream: Stream, how: int) -> None:
        if how != _ENDED:
            stream.reset = True
        if not stream.closed:
            stream.closed = True
            del self.streams[stream.id]
            self.buffered -= stream.buffered
        self._remember(stream.id, how)

    def _remember(self, stream_id: int, how: int) -> None:
        closed = self._closed
        closed[stream_id] = how
        if len(closed) > CLOSED_MEMORY:
            closed.popitem(last=False)

    def _stream_error(self, stream: Stream | int, code: int, message: str) -> Event | None:
        """Reset one stream for breaking a rule: the others go on."""
        stream_id = stream if isinstance(stream, int) else stream.id
        log.warning("HTTP/2 stream %d reset (%s): %s", stream_id, error_name(code), message)
        return self._reset_by_us(stream, code)

    def _refuse(self, stream_id: int) -> None:
        log.debug("HTTP/2 stream %d refused: %d streams open", stream_id, len(self.streams))
        self._reset_by_us(stream_id, REFUSED_STREAM)

    def _reset_by_us(self, stream: Stream | int, code: int) -> Event | None:
        self.output.append(_rst(stream if isinstance(stream, int) else stream.id, code))
        if isinstance(stream, int):
            self.last_stream = max(self.last_stream, stream) if stream % 2 else self.last_stream
            self._remember(stream, _RESET_BY_US)
            return None
        self._forget(stream, _RESET_BY_US)
        return (EV_RESET, stream) if stream.handler is not None else None

    # -- what the server does --

    def reset(self, stream: Stream, code: int) -> None:
        """We give up on ``stream``."""
        if not stream.reset and not stream.closed:
            self._reset_by_us(stream, code)
        stream.reset = True

    def end_local(self, stream: Stream) -> None:
        """We sent END_STREAM on ``stream``."""
        stream.local_closed = True
        if stream.remote_closed:
            self._forget(stream, _ENDED)
        else:
            # gRPC: a server that is done tells the client to stop sending.
            self._reset_by_us(stream, NO_ERROR)

    def consumed(self, stream: Stream, n: int, credited: int = 0) -> None:
        """``n`` bytes of ``stream``'s data were taken by its consumer, of which
        ``credited`` were given back to the stream's window already (:meth:`credit`)."""
        stream.buffered -= n
        if stream.closed:
            return  # already deducted from the connection's count
        self.buffered -= n
        self.credit(stream, n - credited)

    def credit(self, stream: Stream, n: int) -> None:
        """Give ``n`` bytes back to ``stream``'s window before its consumer takes
        them: a message larger than the stream window can only arrive so. They stay
        counted as buffered for the connection, whose window (given back only while
        at most ``MAX_BUFFERED`` bytes wait) still bounds what all streams hold."""
        if stream.closed:
            return
        stream.unacknowledged += n
        if stream.unacknowledged >= _STREAM_GIVE_BACK and not stream.remote_closed:
            self.output.append(_window_update(stream.id, stream.unacknowledged))
            stream.recv_window += stream.unacknowledged
            stream.unacknowledged = 0
        if self._unacknowledged >= _GIVE_BACK:
            self._give_back()

    def _give_back(self) -> None:
        """Give the connection window back, unless too much waits for consumers."""
        if self._unacknowledged >= _GIVE_BACK and self.buffered <= MAX_BUFFERED:
            self.output.append(_window_update(0, self._unacknowledged))
            self.recv_window += self._unacknowledged
            self._unacknowledged = 0
