"""A bench-only store connector on kloset_sdk that discards and generates bytes.

``Put`` reads the whole object and throws it away; ``Get`` of any MAC
streams ``size`` bytes (the ``size`` config key, default 1 GiB) of one
reused 1 MiB buffer, so that only the SDK and its transport are measured.

Run as ``python null_connector.py storage`` (served on stdio, like plakar
runs connectors) or ``python null_connector.py storage --socket PATH``
(the same servicer served by grpcio on a Unix socket, no stdio relay).
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
from kloset_sdk.server import build_server
from kloset_sdk.transport import tune_malloc

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
    """Serve the same servicer straight on a Unix socket until stdin closes.

    The process is set up as serve() sets up a connector (allocator tuning),
    so that only the transport differs."""
    tune_malloc()
    server, _ = build_server("storage", NullStore)
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
