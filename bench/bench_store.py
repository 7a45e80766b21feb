"""5-6. The storage connector (a Kloset store on Azure) and the destination connector.

One local directory is backed up into a store on Azure (``@azstore``) and
into a local store; both snapshots are restored to local disk, and the
local one is also restored into a container (``-to @dst``). Then each
connector alone against the Azure SDK doing the same transfers: the store's
Put and Get of the packfiles plakar wrote, and the exporter's uploads of
the directory's files.

Each measure is also taken with the official Go package (a store and a
destination of its own, made in a second plakar home; its storage and
exporter binaries driven like ours), interleaved with ours: the rows' Go
figure.
"""

from __future__ import annotations

import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.storage.blob import ContainerClient
from azurite import Azurite
from common import (
    BenchPlakar,
    Contenders,
    MiB,
    alternate,
    cpu_note,
    human,
    random_block,
    remove_tree,
    scaled,
    sdk_client,
    snapshot_id,
    watched,
    write_file,
)
from go_package import go_binary
from harness import SplicePlugin, StoreClient, export_files, plugin_argv
from report import Report, Row

RUNS = 2
GET_RUNS = 5
DIR_SIZE = 2 * 1024 * MiB
FILE_SIZE = 16 * MiB
CONCURRENCY = os.cpu_count() or 2
BLOCK = 4 * MiB  # the connector's default block_size
WINDOW = 8  # the connector's default max_concurrency
PLAKAR_GOAL = 0.8
PLUGIN_GOAL = 0.9


def sdk_store_client(az: Azurite, container: str) -> ContainerClient:
    """Set up like the connector: 4 MiB blocks and single puts, 4 MiB first get."""
    return sdk_client(az, container, max_single_put_size=BLOCK, max_block_size=BLOCK,
                      max_single_get_size=BLOCK, max_chunk_get_size=BLOCK)


def make_dir(root: Path, total: int, file_size: int = FILE_SIZE) -> list[tuple[str, int]]:
    files = []
    n = max(1, total // file_size)
    for i in range(n):
        rel = f"part-{i // 16:02d}/file-{i:04d}.bin"
        write_file(root / rel, file_size, 5000 + i)
        files.append((rel, file_size))
    return files


def chunk_pool() -> list[bytes]:
    """32 distinct random 1 MiB chunks, cycled as content (Azure does not dedup)."""
    block = random_block(32 * MiB, 99)
    return [block[i * MiB:(i + 1) * MiB] for i in range(32)]


class StoreBench(Contenders):
    def __init__(self, report: Report) -> None:
        super().__init__(report.notes)
        self.report = report

    def cs(self, endpoint: str | None = None) -> str:
        cs = self.az.connection_string
        return cs.replace(self.az.endpoint, endpoint) if endpoint else cs

    def add(self, kind: str, name: str, container: str, endpoint: str | None = None,
            pk: BenchPlakar | None = None) -> None:
        """A store, source or destination in ``pk``'s plakar home (ours by default)."""
        (pk or self.pk).plakar(kind, "add", name, f"azblob://{container}",
                               f"connection_string={self.cs(endpoint)}")


def run(report: Report) -> None:
    b = StoreBench(report)
    try:
        _run(b)
    finally:
        b.close()


def _run(b: StoreBench) -> None:
    report = b.report
    total = scaled(DIR_SIZE, 64 * MiB)
    src = b.work / "src"
    files = make_dir(src, total)
    total = sum(size for _, size in files)
    label = f"{human(total)} ({len(files)} x {human(FILE_SIZE)})"

    # -- 5. plakar backup into @azstore vs a local store --
    b.add("store", "azstore", "kstore")
    b.pk.plakar("at", "@azstore", "create")
    local_store = str(b.work / "local-store")
    b.pk.plakar("at", local_store, "create")
    go = b.go
    if go is not None:  # the Go package's store: a container of its own
        b.add("store", "azstore", "kstore-go", pk=go)
        go.plakar("at", "@azstore", "create")
    notes, az = report.notes, b.az.process.pid
    t_az, mem, proc = watched(b.pk, notes, "5 plakar at @azstore backup", "at", "@azstore",
                              "backup", str(src), azurite=az)
    az_snap = snapshot_id(proc)
    t_fs, _, proc = watched(b.pk, notes, "5 plakar backup into a local store", "at",
                            local_store, "backup", str(src), azurite=az)
    fs_snap = snapshot_id(proc)
    t_go: dict[str, float] = {}  # the Go package's times, each taken right after ours
    go_note = ""
    if go is not None:
        t_go["backup"], gmem, proc = watched(go, notes, "5 plakar at @azstore backup, Go "
                                             "package", "at", "@azstore", "backup", str(src),
                                             azurite=az)
        go_snap = snapshot_id(proc)
        go_note = f"; Go's {gmem.peak('storage') / MiB:.0f} MiB"
    mib = total / MiB
    report.ratio_row("5", "`plakar at @azstore backup` (storage connector)", label,
                     mib / t_az, "MiB/s", "same backup into a local store", mib / t_fs,
                     PLAKAR_GOAL, runs=_runs({"plugin": [t_az], "local": [t_fs]}, t_go, "backup"),
                     note=f"storage peak RSS {mem.peak('storage') / MiB:.0f} MiB{go_note}",
                     go_value=_speed(mib, t_go, "backup"))

    # -- restores: from @azstore and from the local store, to local disk --
    out_az, out_fs = b.work / "restore-az", b.work / "restore-fs"
    t_raz, mem, _ = watched(b.pk, notes, "5 plakar at @azstore restore", "at", "@azstore",
                            "restore", "-to", str(out_az), az_snap, azurite=az)
    t_rfs, _, _ = watched(b.pk, notes, "5/6 plakar restore from a local store", "at",
                          local_store, "restore", "-to", str(out_fs), fs_snap, azurite=az)
    remove_tree(out_az)
    remove_tree(out_fs)
    if go is not None:
        out_go = b.work / "restore-go"
        t_go["restore"], gmem, _ = watched(go, notes, "5 plakar at @azstore restore, Go "
                                           "package", "at", "@azstore", "restore", "-to",
                                           str(out_go), go_snap, azurite=az)
        remove_tree(out_go)
        go_note = f"; Go's {gmem.peak('storage') / MiB:.0f} MiB"
    report.ratio_row("5", "`plakar at @azstore restore` to local disk", label, mib / t_raz,
                     "MiB/s", "same restore from a local store", mib / t_rfs, PLAKAR_GOAL,
                     runs=_runs({"plugin": [t_raz], "local": [t_rfs]}, t_go, "restore"),
                     note=f"storage peak RSS {mem.peak('storage') / MiB:.0f} MiB{go_note}",
                     go_value=_speed(mib, t_go, "restore"))

    # -- 6. restore of the local snapshot into a container vs to local disk --
    b.add("destination", "dst", "restored")
    if go is not None:
        # The Go package restores the same local snapshot into a container of its own,
        # which it does not create (its exporter uploads into an existing container).
        sdk_store_client(b.az, "restored-go").create_container()
        b.add("destination", "dst", "restored-go", pk=go)
        go.plakar("at", local_store, "ls")  # its own cache of the store, out of the timing
    t_dst, mem, _ = watched(b.pk, notes, "6 plakar restore -to @dst", "at", local_store,
                            "restore", "-to", "@dst", fs_snap, azurite=az)
    out_fs2 = b.work / "restore-fs2"
    t_rfs2, _, _ = watched(b.pk, notes, "6 plakar restore to local disk", "at", local_store,
                           "restore", "-to", str(out_fs2), fs_snap, azurite=az)
    remove_tree(out_fs2)
    if go is not None:
        t_go["dst"], gmem, _ = watched(go, notes, "6 plakar restore -to @dst, Go package", "at",
                                       local_store, "restore", "-to", "@dst", fs_snap,
                                       azurite=az)
        go_note = f"; Go's {gmem.peak('exporter') / MiB:.0f} MiB"
    t_local = statistics.median([t_rfs, t_rfs2])
    report.ratio_row("6", "`plakar restore -to @dst` (destination connector)", label,
                     mib / t_dst, "MiB/s", "same restore to local disk", mib / t_local,
                     PLAKAR_GOAL,
                     runs=_runs({"plugin": [t_dst], "local": [t_rfs, t_rfs2]}, t_go, "dst"),
                     note=f"exporter peak RSS {mem.peak('exporter') / MiB:.0f} MiB{go_note}",
                     go_value=_speed(mib, t_go, "dst"))

    # -- 5. the storage connector alone: Put and Get of the packfiles plakar wrote --
    kstore = sdk_store_client(b.az, "kstore")
    packs = [(p.name, p.size) for p in kstore.list_blobs(name_starts_with="packfiles/")]
    pack_bytes = sum(size for _, size in packs)
    pack_label = f"{len(packs)} packfiles, {human(pack_bytes)}"
    chunks = chunk_pool()
    store_alone(b, packs, pack_bytes, pack_label, chunks)

    # -- 6. the exporter alone vs SDK uploads of the same files --
    exporter_alone(b, files, total, label, chunks)

    # -- why uploads are slow here: Azurite's Put Block --
    azurite_put_block(b, chunks)


def _runs(runs: dict[str, list[float]], go: dict[str, float], key: str) -> dict[str, list[float]]:
    """``runs`` with the Go package's time for ``key``, if it was measured."""
    return {**runs, "Go": [go[key]]} if key in go else runs


def _speed(scale: float, go: dict[str, float] | dict[str, list[float]],
           key: str) -> float | None:
    """``scale`` / the Go package's (median) time for ``key``, if it was measured."""
    if key not in go:
        return None
    t = go[key]
    return scale / (statistics.median(t) if isinstance(t, list) else t)


def azurite_put_block(b: StoreBench, chunks: list[bytes]) -> None:
    """Azurite's CPU per MiB staged, with and without a Content-MD5 on the block.

    Without one, Azurite computes a CRC64 of every block in JavaScript; with
    one it checks the MD5 natively. Informative: the connectors send no MD5,
    like the SDK's default.
    """
    import base64

    from common import CpuMeter

    blob = sdk_store_client(b.az, "stagebench")
    blob.create_container()
    client = blob.get_blob_client("blocks")
    block = b"".join(chunks[:4])
    cost: dict[bool, float] = {}
    for md5 in (False, True):
        with CpuMeter(azurite=b.az.process.pid) as meter:
            for i in range(16):
                client.stage_block(base64.b64encode(f"{int(md5)}-{i:04d}".encode()).decode(), block,
                                   validate_content=md5)
        cost[md5] = meter.used["azurite"] * 1000 / (16 * len(block) / MiB)
    b.report.add(Row("5", "Azurite's CPU per MiB of Put Block (no Content-MD5, as sent)",
                     "16 x 4 MiB", round(cost[False], 1), "ms", "with a Content-MD5",
                     round(cost[True], 1),
                     note="CRC64 computed in JavaScript; caps every uploader here"))


def store_alone(b: StoreBench, packs: list[tuple[str, int]], pack_bytes: int, label: str,
                chunks: list[bytes]) -> None:
    macs = [bytes.fromhex(name.rsplit("/", 1)[-1]) for name, _ in packs]
    sizes = [size for _, size in packs]
    plugin = SplicePlugin(plugin_argv("storage"))
    go: SplicePlugin | None = None
    try:
        if b.go is not None:
            go = SplicePlugin([str(go_binary("storage"))])
        client = StoreClient(plugin.channel, {"location": "azblob://putbench",
                                              "connection_string": b.cs()})
        client.stub.Create(client.pb.CreateRequest(config=b"bench"), timeout=60)
        if go is not None:
            # The Go store needs a Create (or Open) before Put/Get (it has no client
            # before): a prefix of its own in the same container.
            go_client = StoreClient(go.channel, {"location": "azblob://putbench/go",
                                                 "connection_string": b.cs()})
            go_client.stub.Create(go_client.pb.CreateRequest(config=b"bench"), timeout=60)
        sdk = sdk_store_client(b.az, "sdkbench")
        sdk.create_container()
        joined = b"".join(chunks)
        bodies: dict[int, bytes] = {}

        def body(size: int) -> bytes:
            if size not in bodies:
                bodies[size] = (joined * (size // len(joined) + 1))[:size]
            return bodies[size]

        def put_plugin() -> None:
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                written = sum(pool.map(lambda ms: client.put(ms[0], ms[1], chunks),
                                       zip(macs, sizes, strict=True)))
            assert written == pack_bytes

        def put_sdk() -> None:
            def one(i: int) -> None:
                sdk.get_blob_client(f"packfiles/{i:06d}").upload_blob(
                    body(sizes[i]), overwrite=True, max_concurrency=WINDOW)
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(one, range(len(sizes))))

        def get_plugin() -> None:
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                assert sum(pool.map(client.get, macs)) == pack_bytes

        def get_sdk() -> None:
            def one(i: int) -> int:
                down = sdk.get_blob_client(f"packfiles/{i:06d}").download_blob()
                return sum(len(c) for c in down.chunks())
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                assert sum(pool.map(one, range(len(sizes)))) == pack_bytes

        pids = {"plugin": plugin.proc.pid, "bench (client)": os.getpid(),
                "Azurite": b.az.process.pid}
        put_fns = {"plugin": put_plugin, "sdk": put_sdk}
        get_fns = {"plugin": get_plugin, "sdk": get_sdk}
        if go is not None:
            def put_go() -> None:
                with ThreadPoolExecutor(CONCURRENCY) as pool:
                    written = sum(pool.map(lambda ms: go_client.put(ms[0], ms[1], chunks),
                                           zip(macs, sizes, strict=True)))
                assert written == pack_bytes

            def get_go() -> None:
                with ThreadPoolExecutor(CONCURRENCY) as pool:
                    assert sum(pool.map(go_client.get, macs)) == pack_bytes

            put_fns["Go"], get_fns["Go"] = put_go, get_go
            pids["Go plugin"] = go.proc.pid
        cpu_put: dict[str, dict[str, float]] = {}
        cpu_get: dict[str, dict[str, float]] = {}
        puts = alternate(RUNS, cpu=cpu_put, pids=pids, **put_fns)
        # Gets are quick and Azurite's CPU for them varies a lot between runs: more runs.
        gets = alternate(GET_RUNS, cpu=cpu_get, pids=pids, **get_fns)
        b.report.notes.append(cpu_note("5 storage connector alone, Put", cpu_put))
        b.report.notes.append(cpu_note("5 storage connector alone, Get", cpu_get))
        client.close()
        if go is not None:
            go_client.close()
    finally:
        plugin.close_stdin()
        if go is not None:
            go.close_stdin()
    mib = pack_bytes / MiB
    for what, times, ref in (("Put", puts, "SDK upload_blob (4 MiB blocks)"),
                             ("Get", gets, "SDK download_blob")):
        b.report.ratio_row(
            "5", f"storage connector alone: {what} of plakar's packfiles, "
            f"{CONCURRENCY} at a time", label, mib / statistics.median(times["plugin"]),
            "MiB/s", f"{ref}, same objects and concurrency",
            mib / statistics.median(times["sdk"]), PLUGIN_GOAL, runs=times,
            go_value=_speed(mib, times, "Go"))


def exporter_alone(b: StoreBench, files: list[tuple[str, int]], total: int, label: str,
                   chunks: list[bytes]) -> None:
    sdk = sdk_store_client(b.az, "exportsdk")
    sdk.create_container()
    paths = [("/" + rel, size) for rel, size in files]
    joined = b"".join(chunks)

    plugin = SplicePlugin(plugin_argv("exporter"))
    go: SplicePlugin | None = None

    def via_plugin() -> None:
        n = export_files(plugin.channel, {"location": "azblob://exported",
                                          "connection_string": b.cs()},
                         CONCURRENCY, paths, chunks)
        assert n == len(paths), n

    def via_go() -> None:
        assert go is not None
        n = export_files(go.channel, {"location": "azblob://exported-go",
                                      "connection_string": b.cs()},
                         CONCURRENCY, paths, chunks)
        assert n == len(paths), n

    def via_sdk() -> None:
        def one(item: tuple[str, int]) -> None:
            path, size = item
            data = (joined * (size // len(joined) + 1))[:size]
            sdk.get_blob_client(path.lstrip("/")).upload_blob(data, overwrite=True,
                                                              max_concurrency=WINDOW)
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, paths))

    cpu: dict[str, dict[str, float]] = {}
    fns = {"plugin": via_plugin, "sdk": via_sdk}
    pids = {"plugin": plugin.proc.pid, "bench (client)": os.getpid(),
            "Azurite": b.az.process.pid}
    try:
        if b.go is not None:
            go = SplicePlugin([str(go_binary("exporter"))])
            # The Go exporter does not create a missing container: made here first.
            sdk_store_client(b.az, "exported-go").create_container()
            fns["Go"] = via_go
            pids["Go plugin"] = go.proc.pid
        times = alternate(RUNS, cpu=cpu, pids=pids, **fns)
    finally:
        plugin.close_stdin()
        if go is not None:
            go.close_stdin()
    b.report.notes.append(cpu_note("6 exporter alone", cpu))
    mib = total / MiB
    b.report.ratio_row(
        "6", f"exporter alone: Export of the files, {CONCURRENCY} at a time", label,
        mib / statistics.median(times["plugin"]), "MiB/s",
        "SDK upload_blob (4 MiB blocks), same files and concurrency",
        mib / statistics.median(times["sdk"]), PLUGIN_GOAL, runs=times,
        go_value=_speed(mib, times, "Go"))
