"""9. Cold start of each connector: spawn -> Init answered.

Uses bench/cold_start.py (the packaging helper's measurement). The packaged
build is its launcher, dist/plugin/plakar-azblob (`make build`), which
extracts dist/plugin/runtime.tar on its first run: "first run" rows start
each run from a fresh copy of the installed files (extraction included, a
one-time cost per installed package), "later runs" rows reuse the extracted
runtime (the goal: <= 0.3 s). The venv's entry point (what the development
package runs) is measured in any case. The official Go package's connectors
(tests/go_package.py's binaries, no argument) are measured the same way,
interleaved with ours' later runs and with the venv's runs: those rows' Go
figure (a Go binary has nothing to extract: no first-run figure).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from common import ROOT, go_ready
from go_package import go_binary
from report import Report, Row

RUNS = 5
FIRST_RUNS = 3
GOAL = 0.3


def run(report: Report) -> None:
    import cold_start

    go = go_ready(report.notes)
    go_runs: dict[str, list[tuple[float, float]]] = {}

    def go_start(kind: str) -> Callable[[], object]:
        """One cold start of the Go package's ``kind`` connector, kept in go_runs[kind]."""
        argv = [str(go_binary(kind))]
        return lambda: go_runs[kind].append(cold_start.cold_start_argv(argv, kind))

    if cold_start.PACKAGED.exists() and cold_start.ARCHIVE.exists():
        for kind in cold_start.KINDS:
            between = None
            if go:
                go_runs[kind] = []
                cold_start.cold_start_argv([str(go_binary(kind))], kind)  # page cache
                between = go_start(kind)
            firsts, laters = cold_start.first_and_later(kind, FIRST_RUNS, RUNS,
                                                        between=between)
            _add(report, f"cold start of the {kind}, packaged build, first run "
                 "(runtime extracted): spawn -> Init answered", firsts)
            _add(report, f"cold start of the {kind}, packaged build, later runs: "
                 "spawn -> Init answered", laters, goal=True, go=go_runs.get(kind))
    else:
        report.notes.append(f"9: no packaged build at {cold_start.PACKAGED.relative_to(ROOT)} "
                            "(`make build`): the venv entry point only.")
    exe = Path(sys.executable).parent / "plakar-azblob"
    for kind in cold_start.KINDS:
        cold_start.cold_start(exe, kind)  # warms the page cache
        runs = []
        if go:
            go_runs[kind] = []
            cold_start.cold_start_argv([str(go_binary(kind))], kind)  # page cache
        for _ in range(RUNS):  # interleaved with the Go package's
            runs.append(cold_start.cold_start(exe, kind))
            if go:
                go_start(kind)()
        _add(report, f"cold start of the {kind}, venv entry point: spawn -> Init answered",
             runs, go=go_runs.get(kind))


def _add(report: Report, what: str, runs: list[tuple[float, float]],
         goal: bool = False, go: list[tuple[float, float]] | None = None) -> None:
    times = [t for t, _ in runs]
    median = statistics.median(times)
    note = (f"min {min(times):.2f} s, max {max(times):.2f} s; "
            f"CPU {statistics.median(c for _, c in runs):.2f} s per process life")
    go_value = None
    if go:
        go_times = [t for t, _ in go]
        go_value = statistics.median(go_times)
        note += (f"; Go: min {min(go_times):.3f} s, max {max(go_times):.3f} s, "
                 f"CPU {statistics.median(c for _, c in go):.3f} s")
    report.add(Row("9", what, f"{len(runs)} runs", median, "s",
                   goal=f"≤ {GOAL:g} s" if goal else "",
                   met=median <= GOAL if goal else None, note=note, go_value=go_value))
