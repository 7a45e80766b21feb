"""7. Peak RSS (VmHWM) of the plugin processes during real plakar runs.

The plugins are found by command line (``plakar-azblob``) among the
processes whose environment is this plakar's private one (plakar and its
cache daemon start them); /proc is polled every 50 ms.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.storage.blob import BlobServiceClient
from azurite import start_azurite
from common import (
    BenchPlakar,
    GiB,
    MiB,
    PluginMemory,
    count,
    human,
    random_bytes,
    scaled,
    watched,
)
from report import Report, Row

GOAL = 150 * MiB
BIG_BLOB = 4 * GiB
MANY_BLOBS = 200_000
# plakar reads about a hundred small blobs a second here (four records each: the
# file and its three extended attributes), so this case is scaled 5 times further.
MANY_EXTRA_SCALE = 0.2
STORED = 10 * GiB
FILE_SIZE = 64 * MiB


def _row(report: Report, what: str, size: str, kind: str, mem: PluginMemory,
         seconds: float) -> None:
    peak = mem.peak(kind)
    report.add(Row("7", f"peak RSS of the {kind} while {what}", size, peak / MiB, "MiB",
                   goal="≤ 150 MiB", met=peak <= GOAL if peak else None,
                   note=f"{seconds:.0f} s; {len([k for k, _ in mem.peaks.values() if k == kind])}"
                        f" {kind} process(es)"))


def run(report: Report) -> None:
    # Azurite keeps its data on disk here: at the sizes (BENCH_SCALE=1, 14 GiB)
    # an in-memory Azurite stalled until connections to it timed out.
    data = Path(tempfile.mkdtemp(prefix="bench-azurite-"))
    az = start_azurite(location=data)
    pk = BenchPlakar()
    try:
        work = pk.root / "work"
        work.mkdir()
        cs = az.connection_string
        # Set-up uploads send a Content-MD5 per block: Azurite then checks it natively
        # instead of computing a CRC64 in JavaScript (three times faster).
        service = BlobServiceClient.from_connection_string(
            cs, max_single_put_size=64 * MiB, max_block_size=64 * MiB)

        # -- a big blob --
        size = scaled(BIG_BLOB, 64 * MiB)
        big = service.create_container("bigblob")
        big.get_blob_client("big.bin").upload_blob(
            b"".join(random_bytes(size, 4242)), overwrite=True, max_concurrency=4,
            validate_content=True)
        pk.plakar("source", "add", "big", "azblob://bigblob", f"connection_string={cs}")
        store = str(work / "store-big")
        pk.plakar("at", store, "create")
        t, mem, _ = watched(pk, report.notes, "7 backup of one big blob", "at", store,
                            "backup", "@big", azurite=az.process.pid)
        _row(report, "backing up one blob", human(size), "importer", mem, t)
        big.delete_container()

        # -- many blobs --
        n = scaled(int(MANY_BLOBS * MANY_EXTRA_SCALE), 1000)
        many = service.create_container("many")
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: many.upload_blob(f"d{i // 1000:04d}/b{i:07d}", b"x" * 16),
                          range(n)))
        pk.plakar("source", "add", "many", "azblob://many", f"connection_string={cs}")
        store = str(work / "store-many")
        pk.plakar("at", store, "create")
        t, mem, _ = watched(pk, report.notes, "7 backup of many blobs", "at", store,
                            "backup", "@many", azurite=az.process.pid)
        _row(report, "backing up a container of many blobs", f"{count(n)} blobs", "importer",
             mem, t)
        many.delete_container()

        # -- storing a lot --
        total = scaled(STORED, 256 * MiB)
        src = work / "src"
        files = max(1, total // FILE_SIZE)
        for i in range(files):
            path = src / f"f{i:04d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                for chunk in random_bytes(FILE_SIZE, 7000 + i):
                    out.write(chunk)
        pk.plakar("store", "add", "azstore", "azblob://kstore", f"connection_string={cs}")
        pk.plakar("at", "@azstore", "create")
        t, mem, _ = watched(pk, report.notes, "7 backup into @azstore", "at", "@azstore",
                            "backup", str(src), azurite=az.process.pid)
        _row(report, "storing a backup", human(files * FILE_SIZE), "storage", mem, t)
    finally:
        try:
            pk.stop()
        finally:
            az.stop()
            shutil.rmtree(data, ignore_errors=True)
