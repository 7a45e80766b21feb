"""A bench-only store connector on kloset_sdk that discards and generates bytes.

``Put`` reads the whole object and throws it away; ``Get`` of any MAC
streams ``size`` bytes (the ``size`` config key, default 1 GiB) of one
reused 1 MiB buffer, so that only the SDK and its transport are measured.

Run as ``python null_connector.py storage`` (served on stdio, like plakar
runs connectors) or ``python null_connector.py storage --socket PATH``
(the same servicer served by grpcio on a Unix socket, the reference of the
transport bench).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping

from kloset_sdk import (
    CHUNK_SIZE,
    IncomingContent,
    Range,
    Resource,
    Store,
    StoreFlag,
    serve,
)
from kloset_sdk._process.malloc import tune_malloc
from kloset_sdk._process.stdio import build_server
from kloset_sdk._services.common import methods

BLOCK = bytes(range(256)) * (CHUNK_SIZE // 256)


class NullStore(Store):
    type = "null"

    def __init__(self, proto: str, config: Mapping[str, str]) -> None:
        super().__init__(proto, config)
        self.get_size = int(config.get("size", str(1 << 30)))
        self.origin = "null"

    def create(self, config: bytes) -> None:
        pass

    def open(self) -> bytes:
        return b""

    def list(self, resource: Resource, flags: StoreFlag) -> Iterable[bytes]:
        return []

    def put(self, resource: Resource, mac: bytes, content: IncomingContent,
            flags: StoreFlag) -> int:
        written = 0
        for chunk in content.chunks():
            written += len(chunk)
        return written

    def get(self, resource: Resource, mac: bytes, range: Range | None,
            flags: StoreFlag) -> Iterator[bytes]:
        left = self.get_size if range is None else range.length
        while left > 0:
            n = min(left, len(BLOCK))
            yield BLOCK if n == len(BLOCK) else BLOCK[:n]
            left -= n

    def delete(self, resource: Resource, mac: bytes, flags: StoreFlag) -> None:
        pass


def serve_socket(path: str) -> None:
    """Serve the same servicer with grpcio (C core) on a Unix socket until stdin closes:
    the reference the SDK's own HTTP/2 server on stdio is compared with.

    The process is set up as serve() sets up a connector (allocator tuning),
    so that only the transport differs."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    tune_malloc()
    _, service = build_server("storage", NullStore)
    handlers = {}
    for full, method in methods("store.Store", service).items():
        name = full.rsplit("/", 1)[1]
        encode = method.serialize or (lambda message: message)
        make = {(False, False): grpc.unary_unary_rpc_method_handler,
                (False, True): grpc.unary_stream_rpc_method_handler,
                (True, False): grpc.stream_unary_rpc_method_handler,
                (True, True): grpc.stream_stream_rpc_method_handler}[method.kind.value]
        handlers[name] = make(method.handler, request_deserializer=method.parse,
                              response_serializer=encode)
    server = grpc.server(ThreadPoolExecutor(64), options=[
        ("grpc.max_receive_message_length", 16 << 20),
        ("grpc.max_send_message_length", 16 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("store.Store",
                                                                          handlers),))
    if server.add_insecure_port(f"unix:{path}") == 0:
        raise SystemExit(f"cannot listen on {path}")
    server.start()
    print("ready", flush=True)
    sys.stdin.buffer.read()  # the bench closes our stdin to stop us
    server.stop(0)
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--socket":
        serve_socket(sys.argv[3])
    else:
        serve("storage", NullStore)
