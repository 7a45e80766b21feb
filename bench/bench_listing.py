"""listing. Huge containers: the importer's listing against a service's page latency (issue 19).

A synthetic List Blobs service (bench/listing/listing-service, Go, standard
library only; tests/listing_service.py builds and starts it) holds generated
containers: ``hier-N`` (N blobs ``dNNNNN/fNNNNN``, 1000 per prefix) or
``flat-N`` (N blobs named by 32 hex digits, sorted), and sleeps a chosen
delay before answering each page (5000 blobs at most, as Azure). Each
importer, ours (the venv's ``plakar-azblob importer``) and the official Go
one (tests/go_package.py), is driven by the same small Go client
(bench/listing/listing-driver): Init, one Import whose every record is
acknowledged as it comes, as plakar does for a backup with nothing to read
(no Open), Close. Runs alternate ours, Go, ours, Go... against the same
service and config.

Rows: blobs listed per second over the whole listing (file records, from
the Import call to the last record; directories are not counted: the Go
importer sends none), ours against Go's, with each importer's peak RSS
(VmHWM, polled from /proc) and the List Blobs requests each made, at 0 ms,
200 ms and 1 s per page, hierarchical names, and flat hex names at 1 s.
The rows' N is smaller than the issue's million where a sequential listing
would take minutes (1 s per page is 200 s for a million); each row says
its N. Then our peak RSS while listing 300 000 and 1 000 000 blobs (not
scaled): it should not grow with N. ``list_concurrency`` (our source option
for the parallel listing) is passed only in the row that sets it; a tree
whose importer refuses it says so in that row. Our importer runs with its
fork server off (``KLOSET_FORK_SERVER_IDLE=0``): it is then the driver's
child, whose memory and CPU are read from /proc (the fork server only
shortens the start, which is not timed here).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from common import MiB, count, cpu_seconds, scaled
from go_package import go_binary
from listing_service import ListingService, tools_dir
from report import Report, Row

SECTION = "listing"
RUNS = 2  # of each importer per row, alternated
FULL = 1_000_000  # the container
CONCURRENCY = os.cpu_count() or 2  # plakar's default -concurrency: Options.maxconcurrency
# (delay per page in ms, names, N at BENCH_SCALE=1, floor, goal ours/Go): a row each.
# At 1 s per page a sequential listing lists 5000 blobs a second: N is smaller there
# so that Go's run stays near 20 s at the default scale (20 pages: steady state).
RATE_ROWS = (
    # At 0 ms the issue asks for no slower than before the ranges (an A/B against
    # main, not a ratio to Go: Go's per-record CPU is a third of ours): no goal here.
    (0, "hier", FULL, 200_000, None),
    (200, "hier", FULL, 100_000, 2.0),
    (1000, "hier", 400_000, 100_000, 3.0),
    (1000, "flat", 400_000, 100_000, 3.0),
)
SEQUENTIAL_ROW_DELAY = 200  # the row also run with list_concurrency=1 (prefetch only)
MEMORY_SIZES = (300_000, FULL)  # not scaled: the sizes
MEMORY_GOAL = 150 * MiB
MEMORY_SPREAD = 1.10


@dataclass
class Run:
    """One Import through the driver."""

    files: int = 0
    records: int = 0
    seconds: float = 0.0  # Import call to last record
    peak_rss: int = 0  # the importer's VmHWM, bytes
    cpu: float = 0.0  # the importer's CPU seconds (all its processes)
    lists: int = 0
    max_in_flight: int = 0
    error: str = ""

    @property
    def rate(self) -> float:
        return self.files / self.seconds if self.seconds else 0.0


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Watch:
    """Polls the process tree under the driver (the importer, and whatever it starts)
    every 50 ms: the largest VmHWM of any of them, and their CPU seconds."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak = 0
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="listing-rss")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            todo = _children(self.root)
            while todo:
                pid = todo.pop()
                todo += _children(pid)
                self.peak = max(self.peak, _hwm(pid))
                self.cpu[pid] = max(self.cpu.get(pid, 0.0), cpu_seconds(pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def drive(service: ListingService, argv: list[str], config: dict[str, str]) -> Run:
    """One Init + Import + Close of the importer ``argv`` through listing-driver."""
    service.reset()
    driver = subprocess.Popen(
        [str(tools_dir() / "listing-driver"), "-config", json.dumps(config),
         "-concurrency", str(CONCURRENCY), "--", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, "KLOSET_FORK_SERVER_IDLE": "0"})
    watch = Watch(driver.pid)
    try:
        out, err = driver.communicate(timeout=3600)
    finally:
        watch.stop()
    stats = service.stats()
    run = Run(lists=stats["list"], max_in_flight=stats["max_in_flight"], peak_rss=watch.peak,
              cpu=sum(watch.cpu.values()))
    try:
        result = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        run.error = f"driver exited {driver.returncode}: {err.decode()[-500:]}"
        return run
    run.files, run.records, run.seconds = result["files"], result["records"], result["last_s"]
    run.error = result.get("init_error") or result.get("first_error") or ""
    if run.error and result.get("init_error"):
        run.error = "Init refused: " + run.error
    return run


def ours_argv() -> list[str]:
    """The venv's ``plakar-azblob importer`` (what the dev package's wrapper execs)."""
    return [str(Path(sys.executable).parent / "plakar-azblob"), "importer"]


@dataclass
class Contender:
    name: str
    argv: list[str]
    extra: dict[str, str] = field(default_factory=dict)  # more source options
    runs: list[Run] = field(default_factory=list)

    @property
    def failed(self) -> str:
        return next((r.error for r in self.runs if r.error), "")

    def median(self) -> float | None:
        rates = [r.rate for r in self.runs if not r.error]
        return statistics.median(rates) if rates and not self.failed else None

    def summary(self) -> str:
        ok = [r for r in self.runs if not r.error]
        if not ok:
            return f"{self.name}: {self.failed[:300]}"
        lists = sorted({r.lists for r in ok})
        flight = max(r.max_in_flight for r in ok)
        return (f"{self.name} {min(r.rate for r in ok):,.0f} to {max(r.rate for r in ok):,.0f}"
                f" blobs/s, peak RSS {max(r.peak_rss for r in ok) / MiB:.0f} MiB, "
                f"{'/'.join(map(str, lists))} List requests (up to {flight} at once), "
                f"CPU {statistics.median(r.cpu for r in ok):.1f} s")


class ListingBench:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.service = ListingService()
        self.go_argv = [str(go_binary("importer"))]

    def config(self, container: str, extra: dict[str, str]) -> dict[str, str]:
        return {"location": f"azblob://{container}",
                "connection_string": self.service.connection_string, **extra}

    def alternate(self, container: str, n: int, contenders: list[Contender]) -> None:
        for _ in range(RUNS):
            for c in contenders:
                if c.failed:
                    continue  # a refused option is not tried again
                run = drive(self.service, c.argv, self.config(container, c.extra))
                if not run.error and run.files != n:
                    run.error = f"listed {run.files} blobs of {n}"
                c.runs.append(run)

    def rate_row(self, delay: int, kind: str, n: int, goal: float | None) -> None:
        container = f"{kind}-{n}"
        self.service.reset(delay_ms=delay, prepare=container)
        ours = Contender("ours", ours_argv())
        go = Contender("Go", self.go_argv)
        contenders = [ours, go]
        sequential = None
        if delay == SEQUENTIAL_ROW_DELAY:
            sequential = Contender("ours list_concurrency=1", ours_argv(),
                                   {"list_concurrency": "1"})
            contenders.insert(1, sequential)
        self.alternate(container, n, contenders)
        names = "hierarchical names dNNNNN/fNNNNN" if kind == "hier" else "flat hex names"
        size = f"{count(n)} blobs, {delay} ms/page"
        what = f"listing: blobs/s, {names}, {delay} ms per page (ours / Go)"
        note = "; ".join(c.summary() for c in (ours, go)) + \
            f"; median of {RUNS} alternated runs, whole listing of N = {n}"
        self._ratio(what, size, ours, go, goal, note)
        if sequential is not None:
            note = sequential.summary()
            if not sequential.failed:
                note += "; Go's figure is the row above's"
            self._ratio(f"listing: blobs/s, {names}, {delay} ms per page, ours with "
                        "list_concurrency=1 (one stream, next page prefetched) / Go",
                        size, sequential, go, None, note)

    def _ratio(self, what: str, size: str, ours: Contender, go: Contender,
               goal: float | None, note: str) -> None:
        value, ref = ours.median(), go.median()
        if goal is None or value is None or ref is None:
            self.report.add(Row(SECTION, what, size, value, "blobs/s", "official Go importer",
                                ref, f"≥ {goal:g}x" if goal else "", note=note))
            return
        self.report.ratio_row(SECTION, what, size, value, "blobs/s", "official Go importer",
                              ref, goal, note=note,
                              runs={"ours": [r.seconds for r in ours.runs],
                                    "Go": [r.seconds for r in go.runs]})

    def memory_row(self) -> None:
        """Our importer alone (Go's peak RSS is in the rate rows): two full listings."""
        peaks: dict[int, Run] = {}
        self.service.reset(delay_ms=0)
        for n in MEMORY_SIZES:
            container = f"hier-{n}"
            self.service.reset(prepare=container)
            run = drive(self.service, ours_argv(), self.config(container, {}))
            if not run.error and run.files != n:
                run.error = f"listed {run.files} blobs of {n}"
            peaks[n] = run
        small, big = (peaks[n] for n in MEMORY_SIZES)
        what = (f"listing: peak RSS of our importer, {count(MEMORY_SIZES[1])} blobs against "
                f"{count(MEMORY_SIZES[0])}, 0 ms per page")
        note = "; ".join(
            f"{count(n)}: " + (r.error[:200] if r.error else
                               f"{r.peak_rss / MiB:.0f} MiB, {r.rate:,.0f} blobs/s, "
                               f"{r.lists} List requests (up to {r.max_in_flight} at once)")
            for n, r in peaks.items())
        row = Row(SECTION, what, f"{count(MEMORY_SIZES[1])} vs {count(MEMORY_SIZES[0])} blobs",
                  big.peak_rss / MiB if not big.error else None, "MiB",
                  f"ours at {count(MEMORY_SIZES[0])}",
                  small.peak_rss / MiB if not small.error else None,
                  "≤ 150 MiB and ≤ 1.1x", note=note + "; not scaled by BENCH_SCALE")
        if row.value is not None and row.ratio is not None:
            row.met = big.peak_rss <= MEMORY_GOAL and row.ratio <= MEMORY_SPREAD
        self.report.add(row)

    def close(self) -> None:
        self.service.stop()


def run(report: Report) -> None:
    bench = ListingBench(report)
    start = cpu_seconds(bench.service.process.pid)
    try:
        for delay, kind, full, floor, goal in RATE_ROWS:
            bench.rate_row(delay, kind, scaled(full, floor), goal)
        bench.memory_row()
    finally:
        report.notes.append(f"listing: the synthetic service used "
                            f"{cpu_seconds(bench.service.process.pid) - start:.1f} CPU s in all")
        bench.close()
