"""2-4. The source connector: large blobs, small blobs, incremental backup.

For each data set: the importer alone (Import + concurrent Opens over its
stdio pipes, as plakar drives it) against the Azure SDK downloading the same
blobs at the same concurrency; then ``plakar backup @src`` against ``plakar
backup`` of the same files on local disk. Then a second backup of the
unchanged small-blob container through a counting proxy.

Each measure is also taken with the official Go package (its importer
binary driven the same way, or the package installed in a second plakar
home with the same sources), interleaved with ours: the rows' Go figure.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from azure.storage.blob import ContainerClient
from azurite import ACCOUNT, KEY, Azurite
from common import (
    BenchPlakar,
    Contenders,
    MiB,
    NullSink,
    alternate,
    count,
    cpu_note,
    human,
    random_block,
    scaled,
    sdk_client,
    snapshot_id,
    timed,
    watched,
)
from go_package import go_binary
from harness import ImporterRun, SplicePlugin, plugin_argv
from proxy import CountingProxy
from report import Report

RUNS = {"MiB/s": 3, "blobs/s": 2}  # plugin-alone vs SDK, alternated
PLAKAR_RUNS = 1  # plakar backups are slow: one each, measured back to back
LARGE_COUNT = 8
LARGE_SIZE = 256 * MiB
SMALL_COUNT = 20_000
SMALL_SIZE = 4 * 1024
CONCURRENCY = os.cpu_count() or 2  # plakar's default -concurrency: the number of CPUs
BLOCK = 4 * MiB  # the connector's default block_size (range size)
RANGES = 8  # the connector's default max_concurrency (ranges in flight per blob)
PLUGIN_GOAL = 0.9
PLAKAR_GOAL = 0.8


def sdk_container(az: Azurite, name: str, endpoint: str | None = None) -> ContainerClient:
    """A client set up like the connector's: same range size, same per-blob concurrency."""
    return sdk_client(az, name, endpoint, max_single_get_size=BLOCK, max_chunk_get_size=BLOCK,
                      max_single_put_size=LARGE_SIZE + 1)


def sdk_download_all(container: ContainerClient, concurrency: int) -> tuple[int, int]:
    """List the container and download every blob, ``concurrency`` blobs at a time."""
    def one(name: str, size: int) -> int:
        if size > BLOCK:
            sink = NullSink()
            container.get_blob_client(name).download_blob(max_concurrency=RANGES).readinto(sink)
            return sink.written
        return len(container.get_blob_client(name).download_blob().readall())

    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(one, b.name, b.size)
                   for b in container.list_blobs(include=["metadata"])]
        sizes = [f.result() for f in futures]
    return len(sizes), sum(sizes)


def fill_large(container: ContainerClient, local: Path, count_: int, size: int) -> None:
    container.create_container()
    for i in range(count_):
        data = random_block(size, 1000 + i)
        container.get_blob_client(f"large/blob-{i:02d}.bin").upload_blob(data, overwrite=True)
        (local / "large").mkdir(parents=True, exist_ok=True)
        (local / "large" / f"blob-{i:02d}.bin").write_bytes(data)


def fill_small(container: ContainerClient, local: Path, count_: int, size: int) -> None:
    container.create_container()
    base = random_block(size * 64, 7)

    def item(i: int) -> tuple[str, bytes]:
        # Distinct content for each blob (no dedup shortcut for plakar).
        data = i.to_bytes(8, "little") + base[(i % 64) * size + 8:(i % 64 + 1) * size]
        return f"d{i // 1000:03d}/f{i:06d}.bin", data

    items = [item(i) for i in range(count_)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda it: container.upload_blob(it[0], it[1], overwrite=True), items))
    for name, data in items:
        path = local / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class SourceBench(Contenders):
    def __init__(self, report: Report) -> None:
        super().__init__(report.notes)
        self.report = report
        self._stores = 0

    def store(self, pk: BenchPlakar | None = None) -> str:
        """A fresh local store, made by ``pk`` (ours by default)."""
        self._stores += 1
        path = self.work / f"store-{self._stores}"
        (pk or self.pk).plakar("at", str(path), "create")
        return str(path)

    def config(self, container: str, endpoint: str | None = None) -> dict[str, str]:
        cs = self.az.connection_string
        if endpoint:
            cs = cs.replace(self.az.endpoint, endpoint)
        return {"location": f"azblob://{container}", "connection_string": cs}

    def add_source(self, name: str, container: str, endpoint: str | None = None) -> None:
        """Source ``name`` in ours' plakar home and in the Go package's."""
        cfg = self.config(container, endpoint)
        for pk in (self.pk, self.go):
            if pk is not None:
                pk.plakar("source", "add", name, cfg["location"],
                          f"connection_string={cfg['connection_string']}")

    # -- plugin alone vs SDK --

    def plugin_vs_sdk(self, section: str, what: str, size: str, container: str,
                      total_bytes: int, blobs: int, unit: str) -> None:
        plugin = SplicePlugin(plugin_argv("importer"))
        go: SplicePlugin | None = None
        try:
            if self.go is not None:  # the Go package's importer (no argument), driven alike
                go = SplicePlugin([str(go_binary("importer"))])
            run = ImporterRun(plugin.channel, self.config(container), CONCURRENCY)
            run.init()
            sdk = sdk_container(self.az, container)

            def via_plugin() -> None:
                files, received = run.run()
                assert (files, received) == (blobs, total_bytes), (files, received)

            def via_sdk() -> None:
                assert sdk_download_all(sdk, CONCURRENCY) == (blobs, total_bytes)

            fns = {"plugin": via_plugin, "sdk": via_sdk}
            pids = {"plugin": plugin.proc.pid, "bench (client)": os.getpid(),
                    "Azurite": self.az.process.pid}
            if go is not None:
                go_run = ImporterRun(go.channel, self.config(container), CONCURRENCY)
                go_run.init()

                def via_go() -> None:
                    files, received = go_run.run()
                    assert (files, received) == (blobs, total_bytes), (files, received)

                fns["Go"] = via_go
                pids["Go plugin"] = go.proc.pid
            if unit == "MiB/s":
                via_plugin()  # warm-up: connections, caches, Azurite's JIT
                if go is not None:
                    via_go()
            cpu: dict[str, dict[str, float]] = {}
            times = alternate(RUNS[unit], cpu=cpu, pids=pids, **fns)
            self.report.notes.append(cpu_note(f"{section} {what}, importer alone vs SDK"
                                              + (" and Go" if go is not None else ""), cpu))
            run.close()
            if go is not None:
                go_run.close()
        finally:
            plugin.close_stdin()
            if go is not None:
                go.close_stdin()
        scale = (total_bytes / MiB) if unit == "MiB/s" else blobs
        p, s = statistics.median(times["plugin"]), statistics.median(times["sdk"])
        self.report.ratio_row(
            section, f"{what}: importer alone (Import + {CONCURRENCY} concurrent Opens)", size,
            scale / p, unit, f"Azure SDK, list + {CONCURRENCY} concurrent downloads", scale / s,
            PLUGIN_GOAL, runs=times, go_value=_speed(scale, times.get("Go")))

    def plakar_vs_local(self, section: str, what: str, size: str, source: str, local: Path,
                        total_bytes: int, blobs: int, unit: str) -> str:
        """Back up @source and the local copy, each into a fresh store; returns the
        azblob snapshot's store."""
        times: dict[str, list[float]] = {"plugin": [], "local": []}
        store = ""
        peak = go_peak = 0
        notes = self.report.notes
        az = self.az.process.pid
        for _ in range(PLAKAR_RUNS):
            store = self.store()
            t, mem, _ = watched(self.pk, notes, f"{section} {what}: plakar backup @{source}",
                                "at", store, "backup", f"@{source}", azurite=az)
            times["plugin"].append(t)
            peak = max(peak, mem.peak("importer"))
            local_store = self.store()
            t, _, _ = watched(self.pk, notes, f"{section} {what}: plakar backup of the local "
                              "copy", "at", local_store, "backup", str(local), azurite=az)
            times["local"].append(t)
            if self.go is not None:
                t, mem, _ = watched(self.go, notes, f"{section} {what}: plakar backup "
                                    f"@{source}, Go package", "at", self.store(self.go),
                                    "backup", f"@{source}", azurite=az)
                times.setdefault("Go", []).append(t)
                go_peak = max(go_peak, mem.peak("importer"))
        scale = (total_bytes / MiB) if unit == "MiB/s" else blobs
        p, r = statistics.median(times["plugin"]), statistics.median(times["local"])
        note = f"importer peak RSS {peak / MiB:.0f} MiB"
        if go_peak:
            note += f"; Go's {go_peak / MiB:.0f} MiB"
        self.report.ratio_row(
            section, f"{what}: `plakar backup @src`", size, scale / p, unit,
            "`plakar backup` of the same files on local disk", scale / r, PLAKAR_GOAL,
            runs=times, note=note, go_value=_speed(scale, times.get("Go")))
        return store


def run_large(report: Report) -> None:
    count_, size = LARGE_COUNT, scaled(LARGE_SIZE, 16 * MiB)
    total = count_ * size
    label = f"{count_} x {human(size)}"
    b = SourceBench(report)
    try:
        sdk = sdk_container(b.az, "large")
        fill_large(sdk, b.work / "local-large", count_, size)
        b.plugin_vs_sdk("2", "large blobs", label, "large", total, count_, "MiB/s")
        b.add_source("large", "large")
        b.plakar_vs_local("2", "large blobs", label, "large", b.work / "local-large" / "large",
                          total, count_, "MiB/s")
    finally:
        b.close()


def run_small(report: Report) -> None:
    count_, size = scaled(SMALL_COUNT, 500), SMALL_SIZE
    total = count_ * size
    label = f"{count(count_)} x {human(size)}"
    b = SourceBench(report)
    try:
        sdk = sdk_container(b.az, "small")
        fill_small(sdk, b.work / "local-small", count_, size)
        b.plugin_vs_sdk("3", "small blobs", label, "small", total, count_, "blobs/s")
        b.add_source("small", "small")
        b.plakar_vs_local("3", "small blobs", label, "small", b.work / "local-small",
                          total, count_, "blobs/s")
        # Where the time goes: each blob is four records (its file and three extended
        # attributes, each read through an Open of its own); local files have none.
        t, _, _ = watched(b.pk, b.report.notes, "3 plakar backup -no-xattr @small", "at",
                          b.store(), "backup", "-no-xattr", "@small", azurite=b.az.process.pid)
        t_go = None
        if b.go is not None:
            t_go, _, _ = watched(b.go, b.report.notes, "3 plakar backup -no-xattr @small, Go "
                                 "package", "at", b.store(b.go), "backup", "-no-xattr", "@small",
                                 azurite=b.az.process.pid)
        row = _row("3", "small blobs: `plakar backup -no-xattr @src` (for comparison)",
                   label, count_ / t, "blobs/s", "", None, "", None,
                   "the blobs' properties not read as extended attributes")
        row.go_value = count_ / t_go if t_go else None
        b.report.add(row)
        incremental(b, label, count_)
        entra_id(b, label, count_, size)
    finally:
        b.close()


def entra_id(b: SourceBench, label: str, count_: int, size: int) -> None:
    """3. Microsoft Entra ID's reads and listings take the direct path too: the importer
    alone with a managed identity's bearer token against the same with the account
    key, both over https (Azurite with OAuth, and a stand-in for the managed identity
    endpoint: tests/entra_azurite.py). The Go package has no Entra ID."""
    from azure.core.credentials import AccessToken
    from entra_azurite import TokenService, https_azurite, jwt, self_signed

    class Token:  # the Azure SDK alone, with a token like the managed identity's
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            now = int(time.time())
            return AccessToken(jwt({"aud": "https://storage.azure.com", "iat": now - 60,
                                    "nbf": now - 60, "exp": now + 3600,
                                    "iss": "https://sts.windows.net/bench/"}), now + 3600)

    cert, key = self_signed(b.work / "tls")
    az = https_azurite(cert, key)
    tokens = TokenService()
    plugins: dict[str, SplicePlugin] = {}
    try:
        client = ContainerClient(az.endpoint, "entra", connection_verify=str(cert),
                                 credential={"account_name": ACCOUNT, "account_key": KEY})
        fill_small(client, b.work / "local-entra", count_, size)
        env = {**os.environ, **tokens.env, "REQUESTS_CA_BUNDLE": str(cert)}
        base = {"location": "azblob://entra", "account_name": ACCOUNT, "endpoint": az.endpoint}
        configs = {"entra": base, "key": {**base, "account_key": KEY}}
        runs = {}
        for name, config in configs.items():
            plugins[name] = SplicePlugin(plugin_argv("importer"), env)
            runs[name] = ImporterRun(plugins[name].channel, config, CONCURRENCY)
            runs[name].init()

        def via(name: str) -> Any:
            def go() -> None:
                assert runs[name].run() == (count_, count_ * size)
            return go

        sdk = ContainerClient(az.endpoint, "entra", credential=Token(),
                              connection_verify=str(cert), max_single_get_size=BLOCK,
                              max_chunk_get_size=BLOCK)
        times = alternate(RUNS["blobs/s"], entra=via("entra"), key=via("key"),
                          sdk=lambda: sdk_download_all(sdk, CONCURRENCY))
        for run in runs.values():
            run.close()
    finally:
        for plugin in plugins.values():
            plugin.close_stdin()
        tokens.shutdown()
        tokens.server_close()
        az.stop()
    entra, keyed = statistics.median(times["entra"]), statistics.median(times["key"])
    b.report.ratio_row(
        "3", f"small blobs over https: importer alone (Import + {CONCURRENCY} concurrent "
        "Opens) with Microsoft Entra ID (a managed identity's token)", label, count_ / entra,
        "blobs/s", "same with the account key", count_ / keyed, PLUGIN_GOAL, runs=times,
        note=f"Azure SDK alone with such a token, list + {CONCURRENCY} concurrent downloads: "
             f"{count_ / statistics.median(times['sdk']):.0f} blobs/s; {tokens.served} token "
             "fetched in all; the Go package has no Entra ID")


def incremental(b: SourceBench, label: str, count_: int) -> None:
    """4. A second backup of the unchanged container reads no content and costs about
    one listing. Both backups go through a counting proxy (same endpoint, so plakar
    sees the same origin and finds the first snapshot)."""
    proxy = CountingProxy(b.az.port)
    go: dict[str, Any] = {}  # the Go package's figures, each taken right after ours
    try:
        endpoint = proxy.endpoint(ACCOUNT)
        b.add_source("smallp", "small", endpoint)
        store = b.store()
        b.pk.plakar("at", store, "backup", "@smallp")
        first = proxy.snapshot()
        if b.go is not None:
            go_store = b.store(b.go)
            proxy.reset()
            b.go.plakar("at", go_store, "backup", "@smallp")
            go["first"] = proxy.snapshot()
        listing_client = sdk_container(b.az, "small", endpoint)

        def bare_listing() -> None:
            assert sum(1 for _ in listing_client.list_blobs(include=["metadata"])) == count_

        listings = [timed(bare_listing)[0] for _ in range(3)]
        proxy.reset()
        t, _, proc = watched(b.pk, b.report.notes, "4 incremental backup", "at", store,
                             "backup", "@smallp", azurite=b.az.process.pid)
        second = proxy.snapshot()
        snapshot_id(proc)
        if b.go is not None:
            proxy.reset()
            go["t"], _, proc = watched(b.go, b.report.notes, "4 incremental backup, Go package",
                                       "at", go_store, "backup", "@smallp",
                                       azurite=b.az.process.pid)
            go["second"] = proxy.snapshot()
            snapshot_id(proc)
        proxy.reset()
        t_nx, _ = timed(lambda: b.pk.plakar("at", store, "backup", "-no-xattr", "@smallp"))
        second_nx = proxy.snapshot()
        if b.go is not None:
            proxy.reset()
            go["t_nx"], _ = timed(lambda: b.go.plakar("at", go_store, "backup", "-no-xattr",
                                                      "@smallp"))
            go["second_nx"] = proxy.snapshot()
    finally:
        proxy.close()
    listing = statistics.median(listings)
    gets = second["requests"].get("get_blob", 0)
    content = second["response_bytes"].get("get_blob", 0)
    note = (f"{content} content bytes; {second['requests'].get('list', 0)} list "
            f"requests (plakar lists twice: one importer only counts)")
    row = _row("4", "incremental backup: GET blob requests (content bytes)", label,
               gets, "requests", "first backup",
               first["requests"].get("get_blob", 0), "= 0", gets == 0, note)
    if go:
        row.go_value = go["second"]["requests"].get("get_blob", 0)
        row.note += (f"; Go: {go['second']['response_bytes'].get('get_blob', 0)} content "
                     f"bytes, {go['first']['requests'].get('get_blob', 0)} GET blob on its "
                     "first backup")
    b.report.add(row)
    b.report.ratio_row("4", "incremental backup: time vs a bare listing", label, t, "s",
                       "bare listing (Azure SDK, with metadata)", listing, 1.5, higher=False,
                       note="ratio = backup / listing", go_value=go.get("t"))
    row = _row("4", "incremental backup -no-xattr (for comparison)", label, t_nx, "s",
               "bare listing (Azure SDK, with metadata)", listing, "", None,
               f"{second_nx['requests'].get('get_blob', 0)} GET blob; plakar re-reads "
               "every extended attribute on each backup (never cached)")
    if go:
        row.go_value = go["t_nx"]
        row.note += f"; Go: {go['second_nx']['requests'].get('get_blob', 0)} GET blob"
    b.report.add(row)


def _speed(scale: float, times: list[float] | None) -> float | None:
    """``scale`` / the median of ``times`` (the Go package's runs), if any."""
    return scale / statistics.median(times) if times else None


def _row(section: str, what: str, size: str, value: float, unit: str, reference: str,
         ref_value: float, goal: str, met: bool, note: str) -> Any:
    from report import Row

    return Row(section, what, size, value, unit, reference, ref_value, goal, met, note)
