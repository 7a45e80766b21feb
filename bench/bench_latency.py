"""8. Sections 2 and 5 again with 20 ms added to every request.

Each measure is taken twice through the same loopback proxy (bench/proxy.py),
without and with the delay, so that the ratio shows the latency alone. The
official Go package is measured the same way through the same proxies,
interleaved with ours: the rows' Go figure is its throughput with the delay.
"""

from __future__ import annotations

import statistics

from azurite import ACCOUNT
from bench_source import (
    CONCURRENCY,
    LARGE_COUNT,
    LARGE_SIZE,
    SourceBench,
    fill_large,
    sdk_container,
)
from bench_store import DIR_SIZE, make_dir
from common import MiB, human, scaled, timed
from go_package import go_binary
from harness import ImporterRun, SplicePlugin, plugin_argv
from proxy import CountingProxy
from report import Report, Row

DELAY = 0.020


def _ratio(report: Report, what: str, size: str, fast: float, slow: float, unit: str,
           requests: int, go: dict[str, float] | None = None) -> None:
    """``go``: the Go package's figures through the same proxies (fast and slow)."""
    note = f"{requests} requests with the delay"
    if go:
        note += (f"; Go without delay: {go['fast']:.0f} {unit}, "
                 f"{go['slow'] / go['fast']:.2f}x with it")
    report.add(Row("8", f"{what}, +20 ms per request", size, slow, unit,
                   "same through the proxy without delay", fast, note=note,
                   go_value=go["slow"] if go else None))


def run(report: Report) -> None:
    b = SourceBench(report)
    fast, slow = CountingProxy(b.az.port), CountingProxy(b.az.port, DELAY)
    try:
        # -- 2. large blobs: importer alone and plakar backup @src --
        size = scaled(LARGE_SIZE, 16 * MiB)
        total = LARGE_COUNT * size
        label = f"{LARGE_COUNT} x {human(size)}"
        fill_large(sdk_container(b.az, "large"), b.work / "local-large", LARGE_COUNT, size)
        mib = total / MiB
        alone: dict[str, float] = {}
        backup: dict[str, float] = {}
        counts: dict[str, int] = {}
        go = b.go  # the official Go package (None: not measured)
        go_alone: dict[str, float] = {}
        go_backup: dict[str, float] = {}
        for name, proxy in (("fast", fast), ("slow", slow)):
            endpoint = proxy.endpoint(ACCOUNT)
            plugin = SplicePlugin(plugin_argv("importer"))
            go_plugin: SplicePlugin | None = None
            try:
                if go is not None:
                    go_plugin = SplicePlugin([str(go_binary("importer"))])
                runs = {"ours": ImporterRun(plugin.channel, b.config("large", endpoint),
                                            CONCURRENCY)}
                if go_plugin is not None:
                    runs["Go"] = ImporterRun(go_plugin.channel, b.config("large", endpoint),
                                             CONCURRENCY)
                for run_ in runs.values():
                    run_.init()
                # Interleaved (ours, Go, ours, Go); the proxy counts each run apart.
                times: dict[str, list[float]] = {who: [] for who in runs}
                requests = 0
                for _ in range(2):
                    for who, run_ in runs.items():
                        proxy.reset()
                        times[who].append(timed(run_.run)[0])
                        if who == "ours":
                            requests += sum(proxy.snapshot()["requests"].values())
                counts["alone"] = requests // 2
                for run_ in runs.values():
                    run_.close()
            finally:
                plugin.close_stdin()
                if go_plugin is not None:
                    go_plugin.close_stdin()
            alone[name] = mib / statistics.median(times["ours"])
            if "Go" in times:
                go_alone[name] = mib / statistics.median(times["Go"])
            b.add_source(f"large-{name}", "large", endpoint)
            store = b.store()
            proxy.reset()
            t, _ = timed(lambda s=store, n=name: b.pk.plakar("at", s, "backup", f"@large-{n}"))
            counts["backup"] = sum(proxy.snapshot()["requests"].values())
            backup[name] = mib / t
            if go is not None:
                store = b.store(go)
                t, _ = timed(lambda s=store, n=name: go.plakar("at", s, "backup", f"@large-{n}"))
                go_backup[name] = mib / t
        _ratio(report, "2: importer alone (large blobs)", label, alone["fast"], alone["slow"],
               "MiB/s", counts["alone"], go_alone)
        _ratio(report, "2: `plakar backup @src` (large blobs)", label, backup["fast"],
               backup["slow"], "MiB/s", counts["backup"], go_backup)

        # -- 5. plakar at @azstore backup --
        src = b.work / "src"
        files = make_dir(src, scaled(DIR_SIZE, 64 * MiB))
        dir_bytes = sum(s for _, s in files)
        stored: dict[str, float] = {}
        go_stored: dict[str, float] = {}
        for name, proxy in (("fast", fast), ("slow", slow)):
            cfg = b.config(f"kstore-{name}", proxy.endpoint(ACCOUNT))
            b.pk.plakar("store", "add", f"azstore-{name}", cfg["location"],
                        f"connection_string={cfg['connection_string']}")
            b.pk.plakar("at", f"@azstore-{name}", "create")
            if go is not None:  # the Go package's store: a container of its own
                go_cfg = b.config(f"kstore-{name}-go", proxy.endpoint(ACCOUNT))
                go.plakar("store", "add", f"azstore-{name}", go_cfg["location"],
                          f"connection_string={go_cfg['connection_string']}")
                go.plakar("at", f"@azstore-{name}", "create")
            proxy.reset()
            t, _ = timed(lambda n=name: b.pk.plakar("at", f"@azstore-{n}", "backup", str(src)))
            stored[name] = dir_bytes / MiB / t
            requests = sum(proxy.snapshot()["requests"].values())
            if go is not None:
                t, _ = timed(lambda n=name: go.plakar("at", f"@azstore-{n}", "backup", str(src)))
                go_stored[name] = dir_bytes / MiB / t
        _ratio(report, "5: `plakar at @azstore backup`", human(dir_bytes), stored["fast"],
               stored["slow"], "MiB/s", requests, go_stored)
    finally:
        fast.close()
        slow.close()
        b.close()
