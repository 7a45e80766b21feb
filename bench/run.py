"""``make bench``: every benchmark against a private Azurite, beside its reference.

Usage: python bench/run.py [SECTION ...]   (sections: transport large small store
memory latency cold go listing; default all), or --render to rebuild latest.md from
latest.json. BENCH_SCALE scales the data sizes (default in bench/common.py);
the official Go package is measured beside ours in sections large, small, store,
latency and cold (BENCH_GO=0 leaves it out there; sections go and listing always
measure it). Section listing (issue 19): the importers' listing of huge containers
against a synthetic List Blobs service with 0 ms, 200 ms and 1 s per page
(bench/bench_listing.py).
Results: bench/results/latest.md and .json.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from report import Report

from kloset_sdk._process.malloc import tune_malloc


def sections() -> dict[str, object]:
    import bench_cold
    import bench_go
    import bench_latency
    import bench_listing
    import bench_memory
    import bench_source
    import bench_store
    import bench_transport

    return {
        "transport": bench_transport.run,
        "large": bench_source.run_large,
        "small": bench_source.run_small,
        "store": bench_store.run,
        "memory": bench_memory.run,
        "latency": bench_latency.run,
        "cold": bench_cold.run,
        "go": bench_go.run,
        "listing": bench_listing.run,
    }


def render() -> int:
    """Rebuild latest.md from latest.json with the current bench/findings.md."""
    import json

    from report import Row

    folder = common.BENCH / "results"
    data = json.loads((folder / "latest.json").read_text())
    report = Report(scale=data["scale"], machine=data["machine"], notes=data["notes"],
                    durations=data["durations"], started=data["started"])
    fields = set(Row.__dataclass_fields__)
    report.rows = [Row(**{k: v for k, v in row.items() if k in fields}) for row in data["rows"]]
    findings = common.BENCH / "findings.md"
    report.appendix = findings.read_text() if findings.exists() else ""
    print(f"saved {report.save(folder)}")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--render"]:
        return render()
    # The bench process is the reference's client (Azure SDK) and plakar's side of the
    # pipes: give it the same allocator settings as the plugins, so references are not
    # slowed down by page faults either.
    tune_malloc()
    plakar_bin = common.plakar_bin()
    report = Report(scale=common.SCALE, machine=common.machine(plakar_bin))
    findings = common.BENCH / "findings.md"
    if findings.exists():
        report.appendix = findings.read_text()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    report.machine["load"] = f"{load} (1/5/15 min, at start)"
    available = sections()
    chosen = argv or list(available)
    unknown = [s for s in chosen if s not in available]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(available)}")
        return 2
    print(f"bench: scale {common.SCALE:g}, sections {', '.join(chosen)}", flush=True)
    failed = []
    for name in chosen:
        print(f"== {name}", flush=True)
        start = time.monotonic()
        try:
            available[name](report)  # type: ignore[operator]
        except Exception:
            traceback.print_exc()
            report.notes.append(f"section {name} failed: {traceback.format_exc().splitlines()[-1]}")
            failed.append(name)
        report.durations[name] = time.monotonic() - start
        report.save(common.BENCH / "results")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    report.machine["load at end"] = f"{load} (1/5/15 min)"
    path = report.save(common.BENCH / "results")
    print(report.markdown())
    print(f"saved {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
