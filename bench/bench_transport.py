"""1. The stdio transport: 1 MiB chunks both ways, the SDK's HTTP/2 on stdio vs grpcio
on a Unix socket."""

from __future__ import annotations

import sys

from common import BENCH, GiB, MiB, alternate, human
from harness import SocketServer, SplicePlugin, StoreClient
from null_connector import BLOCK
from report import Report

RUNS = 9  # alternated runs per direction: each is well under a second, so load swings matter
SIZE = 1 * GiB  # cheap enough to keep whatever the scale
GOAL = 0.8


def run(report: Report) -> None:
    argv = [sys.executable, str(BENCH / "null_connector.py"), "storage"]
    config = {"location": "null://", "size": str(SIZE)}
    stdio = SplicePlugin(argv)
    direct = SocketServer(argv)
    try:
        s = StoreClient(stdio.channel, config, proto="null")
        d = StoreClient(direct.channel, config, proto="null")
        mac = bytes(32)
        chunks = [BLOCK]

        def put(c: StoreClient) -> None:
            assert c.put(mac, SIZE, chunks) == SIZE

        def get(c: StoreClient) -> None:
            assert c.get(mac) == SIZE

        put(s), put(d), get(s), get(d)  # warm up both paths
        for what, fn, label in (("Put", put, "plakar → plugin"), ("Get", get, "plugin → plakar")):
            times = alternate(RUNS, stdio=lambda fn=fn: fn(s), direct=lambda fn=fn: fn(d))
            med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
            report.ratio_row(
                "1", f"transport {what} ({label}), 1 MiB chunks, SDK on stdio", human(SIZE),
                SIZE / MiB / med["stdio"], "MiB/s",
                "grpcio (C core) on a Unix socket, same servicer",
                SIZE / MiB / med["direct"], GOAL, runs=times)
    finally:
        stdio.close_stdin()
        direct.close()
