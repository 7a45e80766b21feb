"""Cold start of the azblob connectors: spawn -> ``Init`` answered.

Usage: python bench/cold_start.py [--runs N] [--exe PATH] [--venv] [--goal SECONDS]

Each run spawns ``EXE importer|exporter|storage`` the way plakar does (stdin
and stdout are two pipes; tests/stdio_plugin.StdioPlugin relays a grpcio
client to them), sends ``Init`` with a valid config and stops the clock when
the answer arrives; then closes stdin and waits for the exit ("cpu": median
CPU seconds, user + system, of the process's whole life). ``Init`` makes
no request to Azure, so no service is needed. The default EXE is the
packaged build, dist/plugin/plakar-azblob (``make build``); ``--venv`` adds
the venv's ``plakar-azblob`` script for comparison. Prints a table; nothing
is asserted (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from stdio_plugin import StdioPlugin  # noqa: E402

from kloset_sdk._proto import exporter_pb2 as epb  # noqa: E402
from kloset_sdk._proto import exporter_pb2_grpc as epb_grpc  # noqa: E402
from kloset_sdk._proto import importer_pb2 as ipb  # noqa: E402
from kloset_sdk._proto import importer_pb2_grpc as ipb_grpc  # noqa: E402
from kloset_sdk._proto import store_pb2 as spb  # noqa: E402
from kloset_sdk._proto import store_pb2_grpc as spb_grpc  # noqa: E402

PACKAGED = ROOT / "dist" / "plugin" / "plakar-azblob"
KINDS = ("importer", "exporter", "storage")
# Azurite's well-known development account; Init sends nothing to it.
CONFIG = {
    "location": "azblob://cold-start/some/prefix",
    "connection_string": (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"),
}


def _init(kind: str, channel: grpc.Channel) -> None:
    if kind == "importer":
        ipb_grpc.ImporterStub(channel).Init(  # type: ignore[no-untyped-call]
            ipb.InitRequest(proto="azblob", config=CONFIG,
                            options=ipb.Options(maxconcurrency=8)),
            timeout=30, wait_for_ready=True)
    elif kind == "exporter":
        epb_grpc.ExporterStub(channel).Init(  # type: ignore[no-untyped-call]
            epb.InitRequest(proto="azblob", config=CONFIG,
                            options=epb.Options(maxconcurrency=8)),
            timeout=30, wait_for_ready=True)
    else:
        spb_grpc.StoreStub(channel).Init(  # type: ignore[no-untyped-call]
            spb.InitRequest(proto="azblob", config=CONFIG), timeout=30, wait_for_ready=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold_start(exe: Path, kind: str) -> tuple[float, float]:
    """Seconds from spawning ``exe kind`` to its answer to Init, and the CPU
    seconds the process used in its whole life (Init, then exit on EOF)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    plugin = StdioPlugin([str(exe), kind])
    try:
        _init(kind, plugin.channel)
        elapsed = time.perf_counter() - started
        plugin.close_stdin()
    except Exception:
        plugin.kill()
        sys.stderr.write(plugin.stderr)
        raise
    return elapsed, _children_cpu() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per connector (default 5)")
    parser.add_argument("--exe", type=Path, default=PACKAGED,
                        help="executable to start (default: dist/plugin/plakar-azblob)")
    parser.add_argument("--venv", action="store_true",
                        help="also measure the venv's plakar-azblob script")
    parser.add_argument("--goal", type=float, default=0.3,
                        help="mark medians above this many seconds (default 0.3)")
    args = parser.parse_args(argv)

    targets = [("packaged", args.exe)]
    if args.venv:
        targets.append(("venv", Path(sys.executable).parent / "plakar-azblob"))
    for _, exe in targets:
        if not exe.exists():
            print(f"{exe} is missing (run `make build`)", file=sys.stderr)
            return 1

    # grpcio's own one-time start-up, on the client side, stays out of the figures.
    with grpc.insecure_channel("unix:/nonexistent"):
        pass
    print(f"cold start: spawn -> Init answered, {args.runs} runs each, seconds")
    print(f"{'build':<9} {'connector':<9} {'min':>6} {'median':>7} {'max':>6} {'cpu':>6}  goal")
    for label, exe in targets:
        for kind in KINDS:
            cold_start(exe, kind)  # first run warms the page cache
            runs = [cold_start(exe, kind) for _ in range(args.runs)]
            times = [elapsed for elapsed, _ in runs]
            cpu = statistics.median(c for _, c in runs)
            median = statistics.median(times)
            mark = "ok" if median <= args.goal else f"> {args.goal:g}"
            print(f"{label:<9} {kind:<9} {min(times):6.3f} {median:7.3f} {max(times):6.3f}"
                  f" {cpu:6.3f}  {mark}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
