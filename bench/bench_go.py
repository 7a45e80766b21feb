"""10. Ours against the official Go package, per object, through the real plakar.

Both packages are installed as users install them (ours: the packaged build
of ``make build``, packed by ``plakar pkg create``; Go's: built from
``../shared/reference`` by tests/go_package.py), each in a plakar home of
its own, against one Azurite. Every measure alternates the two packages
(ours, Go, ours, Go...) RUNS times and compares medians; a first round of
each is run before and not counted (connections, caches, our fork server).
Then the same per-object cases through a proxy adding 20 ms to every
request (a real region's round trip).

Ratios are ours / Go: for times lower is better (≤ 1.0x: at least Go's
speed), for throughputs higher is better.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from azurite import ACCOUNT, Azurite, start_azurite
from common import (
    ROOT,
    MiB,
    human,
    random_block,
    sdk_client,
    timed,
)
from go_package import go_binary, install_go_azblob
from harness import ImporterRun, SplicePlugin, StoreClient
from plakar_env import PlakarEnv
from proxy import CountingProxy
from report import Report

RUNS = 5
SMALL = 1000  # blobs of the per-object cases (the table)
SMALL_SIZE = 4 * 1024
SMALL_DELAYED = 500  # with +20 ms per request
LARGE = 6
LARGE_SIZE = 64 * MiB
OPENS = 8  # Opens in flight, importer alone
PUTS, PUT_SIZE = 8, 16 * MiB
DELAY = 0.020
PACKAGED = ROOT / "dist" / "plugin" / "plakar-azblob"


class Contender:
    """One package in a plakar home of its own, with sources and stores."""

    def __init__(self, name: str, az: Azurite, install: Callable[[PlakarEnv], Any]) -> None:
        self.name = name
        self.az = az
        self.pk = PlakarEnv()
        install(self.pk)
        self.stores = 0

    def cs(self, endpoint: str | None = None) -> str:
        cs = self.az.connection_string
        return cs.replace(self.az.endpoint, endpoint) if endpoint else cs

    def run(self, *args: str) -> Any:
        return self.pk.run(*args, timeout=3600)

    def local_store(self) -> str:
        self.stores += 1
        path = str(self.pk.root / f"store-{self.stores}")
        self.run("at", path, "create")
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run("cached", "stop")
        self.pk.stop()


def install_ours(env: PlakarEnv) -> None:
    """``plakar pkg add`` of the packaged build (``make build``), as a user installs it."""
    if not PACKAGED.exists():
        raise RuntimeError(f"{PACKAGED} is missing: run `make build`")
    out = env.root / "ptar"
    out.mkdir()
    ptar = env.pkg_create(ROOT / "manifest.yaml", "v1.0.0", out)
    env.run("pkg", "add", str(ptar))


def fill_small(az: Azurite, container: str, count: int) -> None:
    """A new container of ``count`` blobs of SMALL_SIZE, 100 to a prefix."""
    client = sdk_client(az, container)
    client.create_container()
    base = random_block(SMALL_SIZE * 64, 11)
    items = [(f"d{i // 100:02d}/f{i:05d}.bin",
              i.to_bytes(8, "little") + base[(i % 64) * SMALL_SIZE + 8:
                                             (i % 64 + 1) * SMALL_SIZE])
             for i in range(count)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda it: client.upload_blob(it[0], it[1], overwrite=True), items))


def store_tree(folder: Path) -> Path:
    """The local files the store commands back up: 20 x 256 KiB in 4 folders."""
    for i in range(20):
        (folder / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (folder / f"d{i % 4}" / f"f{i}.bin").write_bytes(random_block(256 * 1024, 900 + i))
    return folder


def alternate(runs: int, **fns: Callable[[], Any]) -> dict[str, list[float]]:
    """Each function run once unmeasured, then ``runs`` times interleaved; seconds."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(timed(fn)[0])
    return times


class GoBench:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.az = start_azurite()
        self.ours = Contender("ours", self.az, install_ours)
        self.go = Contender("Go", self.az, install_go_azblob)
        self.both = (self.ours, self.go)

    def close(self) -> None:
        for c in self.both:
            c.close()
        self.az.stop()

    def row(self, what: str, size: str, times: dict[str, list[float]], *, scale: float = 0,
            unit: str = "s", goal: float = 1.0, note: str = "") -> None:
        """A row of ours vs Go: times (scale 0) or throughputs (scale / time)."""
        ours, go = statistics.median(times["ours"]), statistics.median(times["Go"])
        u = "ms" if unit == "ms" else "s"
        spread = (f"ours {min(times['ours']):.3g} to {max(times['ours']):.3g} {u}, "
                  f"Go {min(times['Go']):.3g} to {max(times['Go']):.3g} {u} over {RUNS} runs")
        note = f"{note}; {spread}" if note else spread
        if scale:
            self.report.ratio_row("10", what, size, scale / ours, unit, "official Go package",
                                  scale / go, goal, note=note, runs=times)
        else:
            self.report.ratio_row("10", what, size, ours, unit, "official Go package", go,
                                  goal, higher=False, note=note, runs=times)

    # -- plakar backup of small blobs --

    def fill_small(self, container: str, count: int) -> None:
        fill_small(self.az, container, count)

    def small_backups(self, label: str, container: str, count: int,
                      endpoint: str | None) -> None:
        """First backup into a fresh local store, then the unchanged incremental(s)."""
        stores: dict[str, str] = {}
        source = "src-" + container + ("-delayed" if endpoint else "")
        for c in self.both:
            c.run("source", "add", source, f"azblob://{container}",
                  f"connection_string={c.cs(endpoint)}")

        def first(c: Contender) -> Callable[[], Any]:
            def go() -> None:
                stores[c.name] = c.local_store()
                c.run("at", stores[c.name], "backup", f"@{source}")
            return go

        def again(c: Contender, *flags: str) -> Callable[[], Any]:
            return lambda: c.run("at", stores[c.name], "backup", *flags, f"@{source}")

        size = f"{count} x {human(SMALL_SIZE)}"
        times = alternate(RUNS, ours=first(self.ours), Go=first(self.go))
        self.row(f"first `plakar backup @src`{label}", size, times)
        times = alternate(RUNS, ours=again(self.ours), Go=again(self.go))
        self.row(f"second backup, nothing changed{label}", size, times)
        if not endpoint:
            times = alternate(RUNS, ours=again(self.ours, "-no-xattr"),
                              Go=again(self.go, "-no-xattr"))
            self.row("second backup, nothing changed, `-no-xattr`", size, times)

    # -- connectors alone --

    def importer_alone(self) -> None:
        size = LARGE_SIZE
        client = sdk_client(self.az, "large", max_single_put_size=size + 1)
        client.create_container()
        for i in range(LARGE):
            client.upload_blob(f"blob-{i}.bin", random_block(size, 300 + i), overwrite=True)
        config = {"location": "azblob://large", "connection_string": self.az.connection_string}
        plugins = {"ours": SplicePlugin([str(PACKAGED), "importer"]),
                   "Go": SplicePlugin([str(go_binary("importer"))])}
        sdk = sdk_client(self.az, "large", max_single_get_size=4 * MiB,
                         max_chunk_get_size=4 * MiB)
        try:
            runs = {}
            for name, plugin in plugins.items():
                run = ImporterRun(plugin.channel, config, OPENS)
                run.init()
                runs[name] = run

            def via(name: str) -> Callable[[], Any]:
                def go() -> None:
                    files, received = runs[name].run()
                    assert (files, received) == (LARGE, LARGE * size), (files, received)
                return go

            def via_sdk() -> None:
                from common import NullSink

                def one(name: str) -> None:
                    sdk.get_blob_client(name).download_blob(max_concurrency=8).readinto(
                        NullSink())
                with ThreadPoolExecutor(OPENS) as pool:
                    list(pool.map(one, [b.name for b in sdk.list_blobs()]))

            times = alternate(RUNS, ours=via("ours"), Go=via("Go"), sdk=via_sdk)
        finally:
            for plugin in plugins.values():
                plugin.close_stdin()
        mib = LARGE * size / MiB
        sdk_speed = mib / statistics.median(times["sdk"])
        self.row(f"importer alone over stdio, {OPENS} Opens in flight", f"{LARGE} x "
                 f"{human(size)}", times, scale=mib, unit="MiB/s",
                 note=f"Azure SDK alone, {OPENS} downloads at a time: {sdk_speed:.0f} MiB/s")

    def one_open(self) -> None:
        """Sequential Opens of small blobs: in the listing's order (plakar's, where ours
        reads ahead) and in a random order (every Open waits for its GET)."""
        config = {"location": "azblob://small", "connection_string": self.az.connection_string}
        for order in ("listing", "random"):
            plugins = {"ours": SplicePlugin([str(PACKAGED), "importer"]),
                       "Go": SplicePlugin([str(go_binary("importer"))])}
            try:
                per: dict[str, list[float]] = {name: [] for name in plugins}
                for _ in range(RUNS):
                    for name, plugin in plugins.items():
                        per[name].append(_open_latency(plugin, config, 200, order))
            finally:
                for plugin in plugins.values():
                    plugin.close_stdin()
            per_ms = {name: [t * 1000 for t in values] for name, values in per.items()}
            self.row(f"one Open of a 4 KiB blob at a time, in {order} order (median of "
                     "200 Opens per run)", "200 Opens", per_ms, unit="ms")

    def put_alone(self) -> None:
        chunks = [random_block(MiB, 500 + i) for i in range(16)]
        stores = {}
        plugins = {"ours": SplicePlugin([str(PACKAGED), "storage"]),
                   "Go": SplicePlugin([str(go_binary("storage"))])}
        try:
            for name, plugin in plugins.items():
                config = {"location": f"azblob://puts/{name.lower()}",
                          "connection_string": self.az.connection_string}
                store = StoreClient(plugin.channel, config)
                store.stub.Create(store.pb.CreateRequest(config=b"bench"), timeout=60)
                stores[name] = store
            count = [0]

            def put(name: str) -> Callable[[], Any]:
                def go() -> None:
                    count[0] += 1
                    base = count[0] * PUTS

                    def one(i: int) -> int:
                        mac = (base + i).to_bytes(32, "big")
                        return stores[name].put(mac, PUT_SIZE, chunks, start=i)
                    with ThreadPoolExecutor(PUTS) as pool:
                        assert sum(pool.map(one, range(PUTS))) == PUTS * PUT_SIZE
                return go

            times = alternate(RUNS, ours=put("ours"), Go=put("Go"))
        finally:
            for plugin in plugins.values():
                plugin.close_stdin()
        mib = PUTS * PUT_SIZE / MiB
        self.row(f"storage Put alone, {PUTS} at a time", f"{PUTS} x {human(PUT_SIZE)}", times,
                 scale=mib, unit="MiB/s")

    def cold_start(self) -> None:
        import cold_start

        for kind in cold_start.KINDS:
            argv = {"ours": [str(PACKAGED), kind], "Go": [str(go_binary(kind))]}
            times: dict[str, list[float]] = {"ours": [], "Go": []}
            for name in times:
                cold_start.cold_start_argv(argv[name], kind)  # unmeasured
            for _ in range(RUNS):
                for name in times:
                    times[name].append(cold_start.cold_start_argv(argv[name], kind)[0] * 1000)
            self.row(f"cold start of the {kind}, spawn -> Init answered (packaged build, "
                     "fork server running)", f"{RUNS} runs", times, unit="ms")

    def store_commands(self) -> None:
        """create, backup x2, ls, check on a store in Azure made by each package."""
        data = store_tree(self.ours.pk.root / "tree")
        count = [0]
        names: dict[str, str] = {}

        def create(c: Contender) -> Callable[[], Any]:
            def go() -> None:
                count[0] += 1
                names[c.name] = f"st{count[0]}"
                c.run("store", "add", names[c.name], f"azblob://stores/{c.name.lower()}-"
                      f"{count[0]}", f"connection_string={c.cs()}")
                c.run("at", f"@{names[c.name]}", "create")
            return go

        times = alternate(RUNS, ours=create(self.ours), Go=create(self.go))
        self.row("`plakar at @store create`", "empty store", times, goal=1.1)
        for c in self.both:
            for _ in range(2):
                c.run("at", f"@{names[c.name]}", "backup", str(data))
        for command in ("ls", "check"):
            times = alternate(RUNS, **{c.name: (lambda c=c, command=command: c.run(
                "at", f"@{names[c.name]}", command)) for c in self.both})
            self.row(f"`plakar at @store {command}`", "2 snapshots of 5 MiB", times, goal=1.1)


def _open_latency(plugin: SplicePlugin, config: dict[str, str], count: int,
                  order: str) -> float:
    """Median seconds of one Open (Init and Import first), ``count`` Opens one at a time."""
    import queue
    import random

    from kloset_grpc import importer_pb2_grpc as ipb_grpc

    from kloset_sdk._proto import connectors_pb2 as cpb
    from kloset_sdk._proto import importer_pb2 as ipb

    stub = ipb_grpc.ImporterStub(plugin.channel)  # type: ignore[no-untyped-call]
    stub.Init(ipb.InitRequest(proto="azblob", config=config,
                              options=ipb.Options(maxconcurrency=1)),
              timeout=60, wait_for_ready=True)
    acks: queue.Queue[Any] = queue.Queue()

    def requests() -> Any:
        while (item := acks.get()) is not None:
            yield item

    call = stub.Import(requests(), timeout=600)
    records = []
    for response in call:
        if response.finished:
            break
        if response.record.hasReader and not response.record.isXattr:
            records.append(response.record)
        else:
            acks.put(ipb.ImportRequest(result=cpb.Result(header=response.record)))
    picked = records[:count] if order == "listing" else random.Random(7).sample(records, count)
    latencies = []
    for record in picked:
        started = time.perf_counter()
        size = sum(len(r.chunk) for r in stub.Open(ipb.OpenRequest(record=record), timeout=60))
        latencies.append(time.perf_counter() - started)
        assert size == SMALL_SIZE
        acks.put(ipb.ImportRequest(result=cpb.Result(header=record)))
    for record in records:
        if record not in picked:
            acks.put(ipb.ImportRequest(result=cpb.Result(header=record)))
    acks.put(None)
    for _ in call:
        pass
    return statistics.median(latencies)


def run(report: Report) -> None:
    b = GoBench(report)
    try:
        b.fill_small("small", SMALL)
        b.small_backups("", "small", SMALL, None)
        b.one_open()
        b.importer_alone()
        b.put_alone()
        b.cold_start()
        b.store_commands()
        proxy = CountingProxy(b.az.port, delay=DELAY)
        try:
            b.fill_small("delayed", SMALL_DELAYED)
            b.small_backups(", +20 ms per request", "delayed", SMALL_DELAYED,
                            proxy.endpoint(ACCOUNT))
        finally:
            proxy.close()
    finally:
        b.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import Report as _Report

    rep = _Report(scale=1.0, machine={})
    run(rep)
    print(rep.markdown())
    os._exit(0)
