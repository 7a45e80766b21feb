"""The SDK's HTTP/2 flow control as a client that keeps to its windows sees it.

A gRPC message larger than the stream window (4 MiB; the SDK takes up to
16 MiB) must still arrive: the window is given back while the message is
being received, not only once it is complete, or client and server would
wait for each other forever.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from h2client import RawClient, grpc_message, request_headers, unary
from hpack import Decoder, Encoder
from test_h2_errors import CONNECTOR, WAIT, _init

from kloset_sdk._proto import store_pb2 as spb
from kloset_sdk._wire.h2state import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    STREAM_WINDOW,
    WINDOW_UPDATE,
    frame,
)

FRAME = 16_384


@pytest.fixture
def store(tmp_path: Path) -> Path:
    (tmp_path / "CONFIG").write_bytes(b"config")
    return tmp_path


def _frames(stream: int, data: bytes) -> bytes:
    return b"".join(frame(DATA, 0, stream, data[i:i + FRAME]) for i in range(0, len(data), FRAME))


def _granted(client: RawClient, stream: int) -> int:
    return sum(int.from_bytes(f.payload[:4], "big") & 0x7FFFFFFF
               for f in client.of(WINDOW_UPDATE, stream))


@pytest.mark.parametrize("size", [6 << 20, 12 << 20])
def test_a_message_larger_than_the_stream_window_arrives(store: Path, size: int) -> None:
    client = RawClient(CONNECTOR)
    encoder = Encoder()
    client.send(_init(1, store))
    data = os.urandom(size)
    mac = hashlib.sha256(data).digest()
    head = grpc_message(spb.PutRequest(mac=mac, type=spb.STORAGE_RESOURCE_PACKFILE)
                        .SerializeToString())
    body = grpc_message(spb.PutRequest(chunk=data).SerializeToString())
    client.send(frame(HEADERS, END_HEADERS, 3, request_headers("/store.Store/Put", encoder))
                + frame(DATA, 0, 3, head))
    sent = len(head)
    # Keep to the stream window: send what it allows, wait for more.
    while sent - len(head) < len(body):
        allowed = STREAM_WINDOW + _granted(client, 3) - sent
        if allowed <= 0:
            before = _granted(client, 3)
            assert client.wait(lambda b=before: _granted(client, 3) > b, WAIT), \
                f"no window given back after {sent} bytes of a {len(body)}-byte message"
            continue
        offset = sent - len(head)
        piece = body[offset:offset + allowed]
        client.send(_frames(3, piece))
        sent += len(piece)
    client.send(frame(DATA, END_STREAM, 3, b""))
    client.send(unary(5, "/store.Store/Ping", b"", encoder))
    assert client.wait(lambda: client.ended(3) and client.ended(5), WAIT)
    trailers = [dict(Decoder().decode(f.payload)) for f in client.of(HEADERS, 3)
                if f.flags & END_STREAM]
    assert trailers and trailers[-1].get("grpc-status") == "0", trailers
    # Never more than the window was granted ahead of what was sent.
    assert _granted(client, 3) <= sent
    status, stderr = client.finish(WAIT)
    assert status == 0, stderr
    assert (store / "packfile" / mac.hex()).read_bytes() == data
