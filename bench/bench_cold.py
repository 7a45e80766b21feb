"""9. Cold start of each connector: spawn -> Init answered.

Uses bench/cold_start.py (the packaging helper's measurement): the packaged
build (dist/plugin/plakar-azblob, from `make build`) when it exists, and the
venv's entry point (what the development package runs) in any case.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from common import ROOT
from report import Report, Row

RUNS = 5


def run(report: Report) -> None:
    import cold_start

    targets = [("venv entry point", Path(sys.executable).parent / "plakar-azblob")]
    if cold_start.PACKAGED.exists():
        targets.insert(0, ("packaged build", cold_start.PACKAGED))
    else:
        report.notes.append(f"9: no packaged build at {cold_start.PACKAGED.relative_to(ROOT)} "
                            "(`make build`): the venv entry point only.")
    for label, exe in targets:
        for kind in cold_start.KINDS:
            cold_start.cold_start(exe, kind)  # warms the page cache
            runs = [_measure(cold_start.cold_start(exe, kind)) for _ in range(RUNS)]
            times = [t for t, _ in runs]
            cpu = [c for _, c in runs if c is not None]
            note = f"min {min(times):.2f} s, max {max(times):.2f} s"
            if cpu:
                note += f"; CPU {statistics.median(cpu):.2f} s per process life"
            report.add(Row("9", f"cold start of the {kind}, {label}: spawn -> Init answered",
                           f"{RUNS} runs", statistics.median(times), "s", note=note))


def _measure(result: float | tuple[float, float]) -> tuple[float, float | None]:
    """cold_start() returns the seconds to Init, or (seconds, CPU seconds)."""
    if isinstance(result, tuple):
        return result[0], result[1]
    return result, None
