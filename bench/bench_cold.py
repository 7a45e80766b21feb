"""9. Cold start of each connector: spawn -> Init answered.

Uses bench/cold_start.py (the packaging helper's measurement). The packaged
build is its launcher, dist/plugin/plakar-azblob (`make build`), which
extracts dist/plugin/runtime.tar on its first run: "first run" rows start
each run from a fresh copy of the installed files (extraction included, a
one-time cost per installed package), "later runs" rows reuse the extracted
runtime (the goal: <= 0.3 s). The venv's entry point (what the development
package runs) is measured in any case.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from common import ROOT
from report import Report, Row

RUNS = 5
FIRST_RUNS = 3
GOAL = 0.3


def run(report: Report) -> None:
    import cold_start

    if cold_start.PACKAGED.exists() and cold_start.ARCHIVE.exists():
        for kind in cold_start.KINDS:
            firsts, laters = cold_start.first_and_later(kind, FIRST_RUNS, RUNS)
            _add(report, f"cold start of the {kind}, packaged build, first run "
                 "(runtime extracted): spawn -> Init answered", firsts)
            _add(report, f"cold start of the {kind}, packaged build, later runs: "
                 "spawn -> Init answered", laters, goal=True)
    else:
        report.notes.append(f"9: no packaged build at {cold_start.PACKAGED.relative_to(ROOT)} "
                            "(`make build`): the venv entry point only.")
    exe = Path(sys.executable).parent / "plakar-azblob"
    for kind in cold_start.KINDS:
        cold_start.cold_start(exe, kind)  # warms the page cache
        _add(report, f"cold start of the {kind}, venv entry point: spawn -> Init answered",
             [cold_start.cold_start(exe, kind) for _ in range(RUNS)])


def _add(report: Report, what: str, runs: list[tuple[float, float]],
         goal: bool = False) -> None:
    times = [t for t, _ in runs]
    median = statistics.median(times)
    note = (f"min {min(times):.2f} s, max {max(times):.2f} s; "
            f"CPU {statistics.median(c for _, c in runs):.2f} s per process life")
    report.add(Row("9", what, f"{len(runs)} runs", median, "s",
                   goal=f"≤ {GOAL:g} s" if goal else "",
                   met=median <= GOAL if goal else None, note=note))
