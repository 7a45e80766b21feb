"""The SDK's HTTP/2 errors, as a client breaking the rules sees them.

A protocol (connection) error ends the connection with GOAWAY carrying the
right code, nothing after it, the output closed, and exactly one line on
stderr naming it (no traceback); a stream error resets that stream alone,
and the rest of the connection keeps serving.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from h2client import Frame, RawClient, grpc_message, request_headers, settings, unary, window_update
from hpack import Decoder, Encoder

from kloset_sdk._proto import store_pb2 as spb
from kloset_sdk._wire.h2state import (
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    HEADERS,
    NO_ERROR,
    PADDED,
    PREFACE,
    PRIORITY,
    PROTOCOL_ERROR,
    RST_STREAM,
    S_INITIAL_WINDOW_SIZE,
    STREAM_CLOSED,
    error_name,
    frame,
)

CONNECTOR = [sys.executable, str(Path(__file__).parent / "pydir_connector.py"), "storage"]
WAIT = 10.0  # seconds: bounds, never timings


@pytest.fixture
def store(tmp_path: Path) -> Path:
    (tmp_path / "CONFIG").write_bytes(b"config")
    return tmp_path


def _init(stream: int, store: Path) -> bytes:
    return unary(stream, "/store.Store/Init", spb.InitRequest(
        proto="pydir", config={"location": f"pydir://{store}"}).SerializeToString())


def _status(client: RawClient, stream: int) -> str | None:
    """The grpc-status of ``stream``'s trailers, if they came."""
    for f in client.of(HEADERS, stream):
        if f.flags & END_STREAM:
            fields = dict(Decoder().decode(f.payload))
            return fields.get("grpc-status")
    return None


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


CONNECTION_ERRORS = {
    "DATA on stream 0": (frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),
    "frame above the maximum size": (frame(DATA, 0, 1, bytes(16_385)), FRAME_SIZE_ERROR),
    "WINDOW_UPDATE of 0": (window_update(0, 0), PROTOCOL_ERROR),
    "connection window past 2^31-1": (window_update(0, 2**31 - 1), FLOW_CONTROL_ERROR),
    "RST_STREAM on an idle stream": (frame(RST_STREAM, 0, 9, bytes(4)), PROTOCOL_ERROR),
    "HEADERS on an even stream": (frame(HEADERS, END_HEADERS | END_STREAM, 4,
                                        request_headers("/store.Store/Ping")), PROTOCOL_ERROR),
    "PRIORITY inside a header block": (
        frame(HEADERS, END_STREAM, 3, request_headers("/store.Store/Ping")[:5])
        + frame(PRIORITY, 0, 3, bytes(5)) + frame(CONTINUATION, END_HEADERS, 3, b""),
        PROTOCOL_ERROR),
    "undecodable header block": (frame(HEADERS, END_HEADERS | END_STREAM, 3, b"\xff\xff\xff"),
                                 COMPRESSION_ERROR),
    "bad DATA padding": (frame(DATA, PADDED, 1, b"\x09abc"), PROTOCOL_ERROR),
    "SETTINGS acknowledged with a payload": (frame(4, 1, 0, bytes(6)), FRAME_SIZE_ERROR),
    "initial window past 2^31-1": (settings((S_INITIAL_WINDOW_SIZE, 2**31)),
                                   FLOW_CONTROL_ERROR),
    "header block larger than 1 MiB": (
        frame(HEADERS, 0, 3, request_headers("/store.Store/Ping"))
        + b"".join(frame(CONTINUATION, 0, 3, bytes(16_384)) for _ in range(70)),
        ENHANCE_YOUR_CALM),
    # 300 references to one 4 000-byte entry of the table: 1.2 MB once decoded.
    "header list decoding to more than 1 MiB": (
        frame(HEADERS, END_HEADERS | END_STREAM, 3, Encoder().encode([("x", "v" * 4000)])
              + b"\xbe" * 300), ENHANCE_YOUR_CALM),
}


@pytest.mark.parametrize("case", sorted(CONNECTION_ERRORS))
def test_connection_error_goaway_and_one_line(case: str, store: Path) -> None:
    bad, code = CONNECTION_ERRORS[case]
    client = RawClient(CONNECTOR)
    client.send(_init(1, store))
    assert client.wait(lambda: _status(client, 1) is not None, WAIT)
    assert _status(client, 1) == "0"
    client.send(bad)
    assert client.wait(lambda: client.eof, WAIT), "the connector did not close its output"
    goaway = client.goaway()
    assert goaway is not None
    assert (goaway.error_code, error_name(goaway.error_code)) == (code, error_name(code))
    assert struct.unpack(">I", goaway.payload[:4])[0] == 1  # the last stream it served
    assert client.after_goaway == 0
    status, stderr = client.finish(WAIT)
    assert status == 0
    line = _one_line(stderr)
    assert line.startswith(f"kloset_sdk: WARNING: HTTP/2 connection error {error_name(code)}: ")


def test_goaway_reaches_plakar_on_pipes() -> None:
    """On plakar's pipes (not a socket), the output is closed after the GOAWAY, while
    stdin stays open: the client reads GOAWAY, then the end."""
    proc = subprocess.Popen(CONNECTOR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(PREFACE + settings() + frame(DATA, 0, 0, b"x"))
    proc.stdin.flush()
    out = proc.stdout.read()  # returns at EOF: stdin is still open
    frames = []
    while out:
        length = int.from_bytes(out[:3], "big")
        frames.append(Frame(out[3], out[4], 0, out[9:9 + length]))
        out = out[9 + length:]
    assert frames[-1].kind == 7 and frames[-1].error_code == PROTOCOL_ERROR
    proc.stdin.close()
    assert proc.wait(WAIT) == 0
    assert _one_line(proc.stderr.read().decode()).endswith(
        "HTTP/2 connection error PROTOCOL_ERROR: DATA on stream 0")


def test_stream_error_resets_that_stream_alone(store: Path) -> None:
    client = RawClient(CONNECTOR)
    encoder = Encoder()  # one table for the whole connection, as a client keeps it
    client.send(_init(1, store))
    # Stream 3: a Put under way (its first messages, no end yet).
    mac = hashlib.sha256(b"obj").digest()
    head = spb.PutRequest(mac=mac, type=spb.STORAGE_RESOURCE_PACKFILE).SerializeToString()
    client.send(frame(HEADERS, END_HEADERS, 3, request_headers("/store.Store/Put", encoder))
                + frame(DATA, 0, 3, grpc_message(head)))
    # Stream 5: malformed (an uppercase header name): reset alone.
    bad = encoder.encode([(":method", "POST"), (":scheme", "http"),
                          (":path", "/store.Store/Ping"), ("content-type", "application/grpc"),
                          ("X-Upper", "1")])
    client.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, bad))
    # Stream 7: a Ping, then stream 7's WINDOW_UPDATE of 0 (reset, if still open),
    # and DATA on stream 5 (closed by that reset: ignored).
    client.send(unary(7, "/store.Store/Ping", b"", encoder) + frame(DATA, 0, 5, b"late"))
    # Stream 9: a request on a stream whose window the client overflows.
    client.send(frame(HEADERS, END_HEADERS, 9, request_headers("/store.Store/Ping", encoder))
                + window_update(9, 2**31 - 1))
    # Stream 3 goes on and ends: the object is stored.
    data = os.urandom(100_000)
    chunk = grpc_message(spb.PutRequest(chunk=data).SerializeToString())
    client.send(b"".join(frame(DATA, 0, 3, chunk[i:i + 16_384])
                         for i in range(0, len(chunk), 16_384)) + frame(DATA, END_STREAM, 3, b""))
    client.send(unary(11, "/store.Store/Ping", b"", encoder))
    assert client.wait(lambda: all(client.ended(s) for s in (1, 3, 5, 7, 9, 11)), WAIT)
    assert [f.error_code for f in client.of(RST_STREAM, 5)] == [PROTOCOL_ERROR]
    assert [f.error_code for f in client.of(RST_STREAM, 9)] == [FLOW_CONTROL_ERROR]
    for stream in (1, 3, 7, 11):
        assert _status(client, stream) == "0", stream
    assert client.ping(WAIT)
    assert client.goaway() is None
    status, stderr = client.finish(WAIT)
    assert status == 0
    assert (store / "packfile" / mac.hex()).read_bytes() == data
    lines = stderr.splitlines()
    assert lines == [
        "kloset_sdk: WARNING: HTTP/2 stream 5 reset (PROTOCOL_ERROR): "
        "invalid header name b'X-Upper'",
        "kloset_sdk: WARNING: HTTP/2 stream 9 reset (FLOW_CONTROL_ERROR): "
        "stream window above 2^31-1",
    ]


def test_frames_on_closed_streams(store: Path) -> None:
    """DATA after the end of a stream is a stream error (STREAM_CLOSED); frames in
    flight on a stream the server reset are ignored; WINDOW_UPDATE and RST_STREAM
    on a closed stream are ignored."""
    client = RawClient(CONNECTOR)
    client.send(_init(1, store))
    assert client.wait(lambda: client.ended(1), WAIT)
    client.send(window_update(1, 10) + frame(RST_STREAM, 0, 1, bytes(4)))
    # Stream 3 is answered before it ends (unknown method): the server resets it with
    # NO_ERROR, and what the client was still sending on it is dropped quietly.
    client.send(frame(HEADERS, END_HEADERS, 3, request_headers("/store.Store/Nope")))
    assert client.wait(lambda: bool(client.of(RST_STREAM, 3)), WAIT)
    assert client.of(RST_STREAM, 3)[0].error_code == NO_ERROR
    assert _status(client, 3) == "12"  # UNIMPLEMENTED
    client.send(frame(DATA, END_STREAM, 3, grpc_message(b"")))
    # Stream 5 half-closed by the client: DATA after its end is a stream error.
    client.send(frame(HEADERS, END_HEADERS | END_STREAM, 5,
                      request_headers("/store.Store/Ping")) + frame(DATA, 0, 5, b"more"))
    assert client.wait(lambda: client.ended(5), WAIT)
    assert client.ping(WAIT)
    assert [f.error_code for f in client.of(RST_STREAM, 5)] == [STREAM_CLOSED]
    assert len(client.of(RST_STREAM, 3)) == 1
    assert client.goaway() is None
    status, stderr = client.finish(WAIT)
    assert status == 0
    assert _one_line(stderr).endswith(
        "HTTP/2 stream 5 reset (STREAM_CLOSED): DATA after END_STREAM")


def test_a_request_that_is_not_grpc_gets_an_http_error(store: Path) -> None:
    client = RawClient(CONNECTOR)
    get = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                            (":authority", "localhost")])
    client.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, get))
    assert client.wait(lambda: client.ended(1), WAIT)
    headers = dict(Decoder().decode(client.of(HEADERS, 1)[0].payload))
    assert headers[":status"] == "415"
    body = b"".join(f.payload for f in client.of(DATA, 1))
    assert body == b"a gRPC server: requests are POST with content-type application/grpc\n"
    status, stderr = client.finish(WAIT)
    assert (status, stderr) == (0, "")
