"""Cold start of the azblob connectors: spawn -> ``Init`` answered.

Usage: python bench/cold_start.py [--runs N] [--first N] [--exe PATH] [--venv]
                                  [--goal SECONDS]

Each run spawns ``EXE importer|exporter|storage`` the way plakar does (stdin
and stdout are two pipes; tests/stdio_plugin.StdioPlugin relays a grpcio
client to them), sends ``Init`` with a valid config and stops the clock when
the answer arrives; then closes stdin and waits for the exit ("cpu": median
CPU seconds, user + system, of the process's whole life). Only the
exporter's ``Init`` makes a request (one, answered by a loopback stub), so
no service is needed. The default EXE is the
packaged build's launcher, dist/plugin/plakar-azblob (``make build``), which
extracts dist/plugin/runtime.tar on its first run: its "first" runs each
start from a fresh copy of the installed files (the launcher and a link to
the archive, as right after ``plakar pkg add``), "later" runs reuse the
extracted runtime. ``--venv`` adds the venv's ``plakar-azblob`` script for
comparison. Prints a table; nothing is asserted (timings depend on the
machine).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from kloset_grpc import exporter_pb2_grpc as epb_grpc  # noqa: E402
from kloset_grpc import importer_pb2_grpc as ipb_grpc  # noqa: E402
from kloset_grpc import store_pb2_grpc as spb_grpc  # noqa: E402
from stdio_plugin import StdioPlugin  # noqa: E402

from kloset_sdk._proto import exporter_pb2 as epb  # noqa: E402
from kloset_sdk._proto import importer_pb2 as ipb  # noqa: E402
from kloset_sdk._proto import store_pb2 as spb  # noqa: E402

PACKAGED = ROOT / "dist" / "plugin" / "plakar-azblob"
ARCHIVE = PACKAGED.with_name("runtime.tar")
KINDS = ("importer", "exporter", "storage")
# Azurite's well-known development account. The importer's and store's Init
# send nothing to Azure; the exporter's checks the container once
# (get_container_properties): a loopback server answers every request with
# 404 ContainerNotFound, which the exporter accepts (it creates the
# container on the first write). So no service is needed.
KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")


class _NotFound(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(404)
        self.send_header("x-ms-error-code", "ContainerNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@functools.cache
def _endpoint() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/devstoreaccount1"


def config() -> dict[str, str]:
    return {
        "location": "azblob://cold-start/some/prefix",
        "connection_string": (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                              f"AccountKey={KEY};BlobEndpoint={_endpoint()};"),
    }


def _init(kind: str, channel: grpc.Channel) -> None:
    if kind == "importer":
        ipb_grpc.ImporterStub(channel).Init(  # type: ignore[no-untyped-call]
            ipb.InitRequest(proto="azblob", config=config(),
                            options=ipb.Options(maxconcurrency=8)),
            timeout=30, wait_for_ready=True)
    elif kind == "exporter":
        epb_grpc.ExporterStub(channel).Init(  # type: ignore[no-untyped-call]
            epb.InitRequest(proto="azblob", config=config(),
                            options=epb.Options(maxconcurrency=8)),
            timeout=30, wait_for_ready=True)
    else:
        spb_grpc.StoreStub(channel).Init(  # type: ignore[no-untyped-call]
            spb.InitRequest(proto="azblob", config=config()), timeout=30, wait_for_ready=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold_start(exe: Path, kind: str) -> tuple[float, float]:
    """Seconds from spawning ``exe kind`` to its answer to Init, and the CPU
    seconds the process used in its whole life (Init, then exit on EOF; a
    connector forked by a fork server is not our child: its CPU is not counted)."""
    return cold_start_argv([str(exe), kind], kind)


def cold_start_argv(argv: list[str], kind: str) -> tuple[float, float]:
    """:func:`cold_start` of any command line serving ``kind`` (the Go package's
    connectors take no argument)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    plugin = StdioPlugin(argv)
    try:
        _init(kind, plugin.channel)
        elapsed = time.perf_counter() - started
        plugin.close_stdin()
    except Exception:
        plugin.kill()
        sys.stderr.write(plugin.stderr)
        raise
    return elapsed, _children_cpu() - cpu


@contextlib.contextmanager
def fresh_install(launcher: Path = PACKAGED) -> Iterator[Path]:
    """A copy of the launcher beside a link to its archive, in a new folder: the
    package as installed, before its first run. Yields the launcher's path."""
    with tempfile.TemporaryDirectory(prefix="azblob-cold-") as tmp:
        copy = Path(tmp) / launcher.name
        shutil.copy2(launcher, copy)
        os.symlink(launcher.with_name(ARCHIVE.name).resolve(), copy.with_name(ARCHIVE.name))
        yield copy


def first_and_later(kind: str, first: int, later: int, launcher: Path = PACKAGED,
                    between: Callable[[], object] | None = None,
                    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """``first`` first runs (each in a fresh install: extraction included), then
    ``later`` runs of the last install (runtime already extracted); ``between`` (if
    given) is called after each later run, untimed (another contender, interleaved)."""
    firsts: list[tuple[float, float]] = []
    laters: list[tuple[float, float]] = []
    for i in range(first):
        with fresh_install(launcher) as exe:
            firsts.append(cold_start(exe, kind))
            if i == first - 1:
                cold_start(exe, kind)  # the first of the later runs warms the page cache
                for _ in range(later):
                    laters.append(cold_start(exe, kind))
                    if between is not None:
                        between()
    return firsts, laters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per connector (default 5)")
    parser.add_argument("--first", type=int, default=3,
                        help="first runs (extraction included) per connector (default 3; "
                        "at least 1: the later runs reuse the last first run's install)")
    parser.add_argument("--exe", type=Path, default=PACKAGED,
                        help="the packaged build's launcher (default: "
                             "dist/plugin/plakar-azblob), or any executable")
    parser.add_argument("--venv", action="store_true",
                        help="also measure the venv's plakar-azblob script")
    parser.add_argument("--goal", type=float, default=0.3,
                        help="mark medians above this many seconds (default 0.3)")
    args = parser.parse_args(argv)
    if args.first < 1:
        parser.error("--first must be at least 1 (the later runs reuse its install)")

    launcher = args.exe.with_name(ARCHIVE.name).exists()
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
    print(f"cold start: spawn -> Init answered, {args.runs} runs each "
          f"({args.first} for first runs), seconds")
    print(f"{'build':<9} {'runs':<6} {'connector':<9} {'min':>6} {'median':>7} {'max':>6}"
          f" {'cpu':>6}  goal")

    def line(label: str, which: str, kind: str, runs: list[tuple[float, float]],
             goal: bool) -> None:
        times = [elapsed for elapsed, _ in runs]
        cpu = statistics.median(c for _, c in runs)
        median = statistics.median(times)
        mark = ("ok" if median <= args.goal else f"> {args.goal:g}") if goal else "-"
        print(f"{label:<9} {which:<6} {kind:<9} {min(times):6.3f} {median:7.3f}"
              f" {max(times):6.3f} {cpu:6.3f}  {mark}", flush=True)

    for label, exe in targets:
        for kind in KINDS:
            if label == "packaged" and launcher:
                firsts, laters = first_and_later(kind, args.first, args.runs, exe)
                line(label, "first", kind, firsts, goal=False)
                line(label, "later", kind, laters, goal=True)
                continue
            cold_start(exe, kind)  # first run warms the page cache
            line(label, "all", kind, [cold_start(exe, kind) for _ in range(args.runs)], True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
