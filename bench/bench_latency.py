"""8. Sections 2 and 5 again with 20 ms added to every request.

Each measure is taken twice through the same loopback proxy (bench/proxy.py),
without and with the delay, so that the ratio shows the latency alone.
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
from harness import ImporterRun, SplicePlugin, plugin_argv
from proxy import CountingProxy
from report import Report, Row

DELAY = 0.020


def _ratio(report: Report, what: str, size: str, fast: float, slow: float, unit: str,
           requests: int) -> None:
    report.add(Row("8", f"{what}, +20 ms per request", size, slow, unit,
                   "same through the proxy without delay", fast,
                   note=f"{requests} requests with the delay"))


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
        for name, proxy in (("fast", fast), ("slow", slow)):
            endpoint = proxy.endpoint(ACCOUNT)
            plugin = SplicePlugin(plugin_argv("importer"))
            try:
                run_ = ImporterRun(plugin.channel, b.config("large", endpoint), CONCURRENCY)
                run_.init()
                proxy.reset()
                times = [timed(run_.run)[0] for _ in range(2)]
                counts["alone"] = sum(proxy.snapshot()["requests"].values()) // 2
                run_.close()
            finally:
                plugin.close_stdin()
            alone[name] = mib / statistics.median(times)
            b.add_source(f"large-{name}", "large", endpoint)
            store = b.store()
            proxy.reset()
            t, _ = timed(lambda s=store, n=name: b.pk.plakar("at", s, "backup", f"@large-{n}"))
            counts["backup"] = sum(proxy.snapshot()["requests"].values())
            backup[name] = mib / t
        _ratio(report, "2: importer alone (large blobs)", label, alone["fast"], alone["slow"],
               "MiB/s", counts["alone"])
        _ratio(report, "2: `plakar backup @src` (large blobs)", label, backup["fast"],
               backup["slow"], "MiB/s", counts["backup"])

        # -- 5. plakar at @azstore backup --
        src = b.work / "src"
        files = make_dir(src, scaled(DIR_SIZE, 64 * MiB))
        dir_bytes = sum(s for _, s in files)
        stored: dict[str, float] = {}
        for name, proxy in (("fast", fast), ("slow", slow)):
            cfg = b.config(f"kstore-{name}", proxy.endpoint(ACCOUNT))
            b.pk.plakar("store", "add", f"azstore-{name}", cfg["location"],
                        f"connection_string={cfg['connection_string']}")
            b.pk.plakar("at", f"@azstore-{name}", "create")
            proxy.reset()
            t, _ = timed(lambda n=name: b.pk.plakar("at", f"@azstore-{n}", "backup", str(src)))
            stored[name] = dir_bytes / MiB / t
        _ratio(report, "5: `plakar at @azstore backup`", human(dir_bytes), stored["fast"],
               stored["slow"], "MiB/s", sum(slow.snapshot()["requests"].values()))
    finally:
        fast.close()
        slow.close()
        b.close()
