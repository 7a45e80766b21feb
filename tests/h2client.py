"""A raw HTTP/2 client for a connector spawned on a socket pair, frame by frame.

The tests of the SDK's HTTP/2 layer need a client that can break every rule
(grpcio's cannot), see every frame the connector answers, and what it does
after a GOAWAY. :class:`RawClient` spawns the connector with one end of a
socket pair as its stdin and stdout (as plakar's pipes), sends whatever
bytes it is given, in order, from a writer thread, and reads the answer in
a reader thread: frames as :class:`Frame`, the end of the output, and any
byte written after a GOAWAY. Like a real client, it gives back the windows
of the DATA it receives (``auto_window``), unless told otherwise.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hpack import Encoder

from kloset_sdk._wire.h2state import (
    ACK,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    frame,
)

_HEADER = struct.Struct(">IBI")
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Frame:
    kind: int
    flags: int
    stream: int
    payload: bytes

    @property
    def error_code(self) -> int:
        """The error code of a RST_STREAM or GOAWAY."""
        return _U32.unpack_from(self.payload, 4 if self.kind == GOAWAY else 0)[0]


def grpc_message(message: bytes) -> bytes:
    return b"\0" + len(message).to_bytes(4, "big") + message


def request_headers(path: str, encoder: Encoder | None = None) -> bytes:
    """A gRPC request's header block, as grpc-go (plakar) sends it."""
    headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
               (":authority", "localhost"), ("content-type", "application/grpc"),
               ("user-agent", "grpc-go/1.78.0"), ("te", "trailers")]
    return (encoder or Encoder()).encode(headers)


def settings(*pairs: tuple[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window_update(stream: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, _U32.pack(increment))


def unary(stream: int, path: str, message: bytes, encoder: Encoder | None = None) -> bytes:
    """HEADERS and one DATA frame carrying the whole request."""
    return frame(HEADERS, END_HEADERS, stream, request_headers(path, encoder)) + \
        frame(DATA, END_STREAM, stream, grpc_message(message))


class RawClient:
    """One connection to a new connector process ``argv`` (see the module's docstring)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 auto_window: bool = True, preface: bool = True) -> None:
        ours, theirs = socket.socketpair()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish())
        self.proc = subprocess.Popen(list(argv), stdin=theirs, stdout=theirs,
                                     stderr=self._stderr, env=dict(env or os.environ))
        theirs.close()
        self.sock = ours
        self.auto_window = auto_window
        self.frames: list[Frame] = []
        self.eof = False
        self.after_goaway = 0  # bytes received after a GOAWAY frame
        self.pause_reading = threading.Event()  # set: the reader stops reading for a while
        self._changed = threading.Condition()
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, daemon=True)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._writer.start()
        self._reader.start()
        if preface:
            self.send(PREFACE + settings())

    # -- sending --

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the writer (sent whole, after what was queued before)."""
        self._out.put(data)

    def close_output(self) -> None:
        """End what we send (after what is queued): the connector reads EOF."""
        self._out.put(None)

    def _write_loop(self) -> None:
        try:
            while (data := self._out.get()) is not None:
                self.sock.sendall(data)
        except OSError:
            pass  # the connector has gone: what it did is in the frames
        finally:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)

    # -- receiving --

    def _read_loop(self) -> None:
        buffer = bytearray()
        goaway = False
        try:
            while True:
                while self.pause_reading.is_set():
                    time.sleep(0.05)
                data = self.sock.recv(1 << 20)
                if not data:
                    break
                if goaway:
                    self.after_goaway += len(data)
                    continue
                buffer += data
                while len(buffer) >= 9:
                    length_kind, flags, stream = _HEADER.unpack_from(buffer)
                    length = length_kind >> 8
                    if len(buffer) < 9 + length:
                        break
                    received = Frame(length_kind & 0xFF, flags, stream & 0x7FFFFFFF,
                                     bytes(buffer[9:9 + length]))
                    del buffer[:9 + length]
                    self._received(received)
                    if received.kind == GOAWAY:
                        goaway = True
                        self.after_goaway += len(buffer)
                        buffer.clear()
                        break
        except OSError:
            pass
        finally:
            with self._changed:
                self.eof = True
                self._changed.notify_all()

    def _received(self, f: Frame) -> None:
        if f.kind == DATA and f.payload and self.auto_window:
            update = window_update(0, len(f.payload))
            if not f.flags & END_STREAM:
                update += window_update(f.stream, len(f.payload))
            self.send(update)
        with self._changed:
            self.frames.append(f)
            self._changed.notify_all()

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` (checked as frames come) or the connector's output ends."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    return done()
                self._changed.wait(left)
        return True

    def ping(self, timeout: float, opaque: bytes = b"h2client") -> bool:
        """Whether the connector answers a PING within ``timeout``."""
        self.send(frame(PING, 0, 0, opaque))
        return self.wait(lambda: any(f.kind == PING and f.flags & ACK and f.payload == opaque
                                     for f in self.frames), timeout)

    def of(self, kind: int, stream: int | None = None) -> list[Frame]:
        with self._changed:
            return [f for f in self.frames
                    if f.kind == kind and (stream is None or f.stream == stream)]

    def ended(self, stream: int) -> bool:
        """Whether the connector ended ``stream`` (END_STREAM or RST_STREAM)."""
        with self._changed:
            return any(f.stream == stream and (
                f.kind == RST_STREAM or (f.kind in (DATA, HEADERS) and f.flags & END_STREAM))
                for f in self.frames)

    def goaway(self) -> Frame | None:
        found = self.of(GOAWAY)
        return found[0] if found else None

    # -- the end --

    def peak_memory(self) -> int:
        """The connector's peak resident memory so far, in KiB (0 once it has exited).

        Its own: ``ru_maxrss`` from wait4 would count the parent it was forked from."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def finish(self, timeout: float) -> tuple[int | None, str]:
        """Close our output and wait (bounded) for the connector to exit: its exit
        status (None if it had to be killed), and its stderr."""
        self.close_output()
        try:
            status: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            status = None
        self._reader.join(timeout)
        self.sock.close()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace")
        self._stderr.close()
        return status, stderr
