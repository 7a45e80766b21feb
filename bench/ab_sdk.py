"""The SDK's transport costs, two source trees A/B, interleaved in one run.

    .venv/bin/python bench/ab_sdk.py /path/to/tree-A /path/to/tree-B [--rounds N]

Each round measures both trees one after the other (the order alternating),
each in a fresh client process whose connectors import ``kloset_sdk`` from
that tree's ``src`` (PYTHONPATH): bench/null_connector.py's Put and Get of
1 GiB in 1 MiB chunks (bench section 1), then with tests/pydir_connector.py's
importer over a folder of 1 000 small files, one Import with every record
acknowledged, and 1 000 unary Opens, one at a time. Figures: wall time, and
the CPU time of the connector process (/proc), per operation. Prints the
medians of each tree and B/A. Not part of ``make bench``: for changes to the
SDK's transport, measured against main's tree.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

GiB = 1 << 30
RECORDS = 1000
OPENS = 1000


def _cpu(pid: int) -> float:
    """CPU seconds of the process's threads, to the nanosecond (schedstat; /proc's
    tick counts are too coarse for one Open)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total / 1e9


def measure(tree: Path, files: Path) -> dict[str, float]:
    """One tree's figures (runs in a child process)."""
    from harness import SplicePlugin, StoreClient
    from kloset_grpc import importer_pb2_grpc as ipb_grpc
    from null_connector import BLOCK

    from kloset_sdk._proto import connectors_pb2 as cpb
    from kloset_sdk._proto import importer_pb2 as ipb

    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    out: dict[str, float] = {}
    store = SplicePlugin([sys.executable, str(HERE / "null_connector.py"), "storage"], env)
    try:
        client = StoreClient(store.channel, {"location": "null://", "size": str(GiB)}, "null")
        mac = bytes(32)
        client.put(mac, 64 << 20, [BLOCK]), client.get(mac)  # warm up
        for what, run in (("put", lambda: client.put(mac, GiB, [BLOCK])),
                          ("get", lambda: client.get(mac))):
            start, cpu = time.perf_counter(), _cpu(store.proc.pid)
            assert run() == GiB
            out[f"{what} MiB/s"] = 1024 / (time.perf_counter() - start)
            out[f"{what} cpu s/GiB"] = _cpu(store.proc.pid) - cpu
    finally:
        store.close_stdin()
    importer = SplicePlugin([sys.executable, str(ROOT / "tests" / "pydir_connector.py"),
                             "importer"], env)
    try:
        stub = ipb_grpc.ImporterStub(importer.channel)
        stub.Init(ipb.InitRequest(proto="pydir", config={"location": f"pydir://{files}"}),
                  timeout=30, wait_for_ready=True)
        pid = importer.proc.pid
        acks: queue.Queue[ipb.ImportRequest | None] = queue.Queue()
        start, cpu = time.perf_counter(), _cpu(pid)
        call = stub.Import(iter(acks.get, None), timeout=120)
        records = []
        for response in call:
            if response.finished:
                break
            records.append(response.record)
        listed, listed_cpu = time.perf_counter() - start, _cpu(pid) - cpu
        # Opened before they are acknowledged, as plakar does.
        opens = [r.pathname for r in records if r.hasReader][:OPENS]
        start, cpu = time.perf_counter(), _cpu(pid)
        for path in opens:
            for _ in stub.Open(ipb.OpenRequest(record=cpb.Record(pathname=path)), timeout=30):
                pass
        out["open us"] = (time.perf_counter() - start) * 1e6 / len(opens)
        out["open cpu us"] = (_cpu(pid) - cpu) * 1e6 / len(opens)
        start, cpu = time.perf_counter(), _cpu(pid)
        for record in records:
            acks.put(ipb.ImportRequest(result=cpb.Result(header=record)))
        acks.put(None)
        assert list(call) == []
        scale = 1000 / len(records)
        out["import ms/1000 records"] = (listed + time.perf_counter() - start) * 1000 * scale
        out["import cpu ms/1000 records"] = (listed_cpu + _cpu(pid) - cpu) * 1000 * scale
    finally:
        importer.close_stdin()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs=2, type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--measure", type=Path)
    parser.add_argument("--files", type=Path)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.files)))
        return
    a, b = (t.resolve() for t in args.trees)
    results: dict[Path, list[dict[str, float]]] = {a: [], b: []}
    with tempfile.TemporaryDirectory(prefix="ab-sdk-") as tmp:
        files = Path(tmp)
        for i in range(RECORDS):
            (files / f"f{i:04}.txt").write_bytes(b"x" * (i % 300))
        for r in range(args.rounds):
            for tree in ((a, b) if r % 2 == 0 else (b, a)):
                proc = subprocess.run([sys.executable, __file__, str(a), str(b), "--measure",
                                       str(tree), "--files", str(files)],
                                      capture_output=True, text=True, check=True)
                results[tree].append(json.loads(proc.stdout.splitlines()[-1]))
                print(f"round {r + 1} {tree}: {results[tree][-1]}", file=sys.stderr)
    print(f"medians of {args.rounds} rounds (A = {a}, B = {b})")
    for key in results[a][0]:
        med = {t: sorted(x[key] for x in results[t])[args.rounds // 2] for t in (a, b)}
        print(f"{key:28} A {med[a]:10.2f}  B {med[b]:10.2f}  B/A {med[b] / med[a]:.3f}")


if __name__ == "__main__":
    main()
