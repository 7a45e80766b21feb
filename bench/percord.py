"""CPU the source connector spends per listed blob, from List Blobs pages to records sent.

Issue 19: listing containers of millions of blobs must keep pace, so the importer's
CPU per record matters on its own. This bench isolates it from the network and
from the service: List Blobs pages in Azure's exact XML shape (:func:`make_pages`,
a deterministic mix of plain blobs, blobs with metadata, rclone and azcopy
conventions, folder markers, non-default content settings and tiers) are fed to
the real importer, whose ``DirectReader.list_page`` is patched to return them; the
importer is driven through its real stdio transport (HTTP/2 + gRPC on two pipes)
by a grpcio client that acknowledges every record without opening it, as plakar
does for an unchanged file. The importer process measures its own CPU
(``time.process_time``, every thread) from Init's end to Close: the client's CPU
is not counted.

    python bench/percord.py [--blobs N] [--runs R] [--python PY ...]

With several ``--python`` (say main's venv and this worktree's), runs alternate
between them (A/B interleaved) and the medians are compared. ``profile`` runs the
same path in one process under cProfile, without the transport::

    python bench/percord.py profile [--blobs N]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import pickle
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

PAGE_SIZE = 5000  # Azure's largest page
# The well-known emulator account: the importer is built with it, and never reaches it.
KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
       "KBHBeksoGMGw==")
CONFIG = {"location": "azblob://bench",
          "connection_string": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                               f"AccountKey={KEY};BlobEndpoint=http://127.0.0.1:9/devstoreaccount1"}
CPU_ENV = "PERCORD_CPU_FILE"
PAGES_ENV = "PERCORD_PAGES"
LAG = 2000  # records the profiled client acknowledges behind the importer

_EXTENSIONS = ("csv", "json", "jpg", "png", "txt", "parquet", "bin", "log.gz", "html", "pdf")
_BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _http(when: datetime) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _blob_xml(name: str, size: int, modified: datetime, props: dict[str, str],
              metadata: dict[str, str], rnd: random.Random) -> str:
    """One ``<Blob>`` as Azure lists it (API 2021+, include=metadata)."""
    md5 = base64.b64encode(hashlib.md5(name.encode()).digest()).decode()
    etag = f"0x8DC{rnd.getrandbits(48):012X}"
    created = modified - timedelta(days=rnd.randrange(0, 30))

    def prop(tag: str, default: str = "") -> str:
        value = props.get(tag, default)
        return f"<{tag}>{escape(value)}</{tag}>" if value else f"<{tag} />"

    meta = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in metadata.items())
    tier = props.get("AccessTier", "Hot")
    inferred = "false" if "AccessTier" in props else "true"
    return (f"<Blob><Name>{escape(name)}</Name><Properties>"
            f"<Creation-Time>{_http(created)}</Creation-Time>"
            f"<Last-Modified>{_http(modified)}</Last-Modified><Etag>{etag}</Etag>"
            f"<Content-Length>{size}</Content-Length>"
            f"{prop('Content-Type')}{prop('Content-Encoding')}{prop('Content-Language')}"
            f"<Content-CRC64 /><Content-MD5>{md5}</Content-MD5>{prop('Cache-Control')}"
            f"{prop('Content-Disposition')}<BlobType>{props.get('BlobType', 'BlockBlob')}"
            f"</BlobType><AccessTier>{tier}</AccessTier>"
            f"<AccessTierInferred>{inferred}</AccessTierInferred>"
            "<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
            "<ServerEncrypted>true</ServerEncrypted></Properties>"
            + (f"<Metadata>{meta}</Metadata>" if meta else "<Metadata />")
            + "<OrMetadata /></Blob>")


def make_blobs(n: int, seed: int = 19) -> list[str]:
    """``n`` listed blobs as ``<Blob>`` elements, in name order: mostly plain files in
    a few levels of folders, the rest each with something the mapping reads."""
    import mimetypes

    rnd = random.Random(seed)
    entries: list[tuple[str, str]] = []
    names: set[str] = set()
    types = mimetypes.MimeTypes()
    while len(entries) < n:
        depth = rnd.choice((0, 1, 1, 2, 2, 2, 3))
        # A few hundred folders: tens of blobs in each, as containers hold them.
        folders = [f"{('data', 'logs', 'img', 'proj')[rnd.randrange(4)]}-{rnd.randrange(width)}"
                   for width in (1, 6, 10)[:depth]]
        ext = rnd.choice(_EXTENSIONS)
        name = "/".join([*folders, f"file-{rnd.randrange(1 << 20):06d}.{ext}"])
        if name in names:
            continue
        names.add(name)
        # Mostly seconds apart over a year; some share a second (as uploads in bulk do).
        modified = _BASE + timedelta(seconds=rnd.randrange(0, 365 * 86400 // 64) * 64)
        size = rnd.choice((0, 17, 512, 4096, 65536, 1 << 20, 5 << 20, 300 << 20))
        size = max(0, size + rnd.randrange(-16, 16)) if size else 0
        guessed, encoding = types.guess_type(name, strict=True)
        props = {"Content-Type": "application/gzip" if encoding == "gzip"
                 else guessed or "application/octet-stream"}
        metadata: dict[str, str] = {}
        kind = rnd.random()
        if kind < 0.08:  # user metadata: one xattr record per key
            metadata = {"owner": rnd.choice(("alice", "bob")), "project": f"p{rnd.randrange(9)}"}
            if rnd.random() < 0.3:
                metadata["note"] = "a & b <c>"
        elif kind < 0.11:  # content settings of its own
            props["Content-Type"] = "application/x-custom"
            props["Cache-Control"] = "max-age=3600"
            props["Content-Encoding"] = rnd.choice(("", "gzip"))
        elif kind < 0.13:
            props["AccessTier"] = "Cool"
        elif kind < 0.16:  # rclone
            ns = rnd.randrange(10**18, 2 * 10**18)
            when = datetime.fromtimestamp(ns // 10**9, timezone.utc)
            metadata = {"mtime": f"{when:%Y-%m-%dT%H:%M:%S}.{ns % 10**9:09d}Z"}
            if rnd.random() < 0.5:
                metadata.update(mode="100640", uid="1000", gid="1000")
        elif kind < 0.18:  # azcopy
            metadata = {"modtime": str(rnd.randrange(10**18, 2 * 10**18)),
                        "permissions": str(0o100600), "posix_owner": "5", "posix_group": "6"}
        elif kind < 0.185:  # an append blob
            props["BlobType"] = "AppendBlob"
        entries.append((name, _blob_xml(name, size, modified, props, metadata, rnd)))
        if kind > 0.995 and folders:  # a folder marker of its own
            marker = "/".join(folders) + "/"
            if marker not in names:
                names.add(marker)
                entries.append((marker, _blob_xml(marker, 0, modified, {}, {}, rnd)))
    # Azure lists by the names' UTF-8 bytes.
    entries.sort(key=lambda e: e[0].encode())
    return [xml for _, xml in entries]


def make_pages(n: int, page_size: int = PAGE_SIZE, seed: int = 19) -> list[bytes]:
    """The List Blobs answers of a container of ``n`` blobs (see :func:`make_blobs`)."""
    blobs = make_blobs(n, seed)
    pages = []
    for start in range(0, len(blobs), page_size):
        chunk = blobs[start:start + page_size]
        last = start + page_size >= len(blobs)
        marker = "<NextMarker />" if last else f"<NextMarker>2!{start:08d}!MDAw</NextMarker>"
        pages.append(('<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
                      'ServiceEndpoint="https://acct.blob.core.windows.net/" '
                      f'ContainerName="bench"><MaxResults>{page_size}</MaxResults><Blobs>'
                      + "".join(chunk) + f"</Blobs>{marker}</EnumerationResults>").encode())
    return pages


# -- the importer's side (a child process) --

def patch_listing(pages: list[bytes]) -> None:
    """Make every DirectReader list ``pages`` (by marker: the first, then in order)."""
    from plakar_azblob.transfer.direct import DirectReader, Page

    def list_page(self: Any, prefix: str | None, marker: str | None,
                  page_size: int | None = None, metadata: bool = True,
                  start_from: str | None = None) -> Page:
        # startFrom is ignored, as by a service without it: the importer then lists
        # by markers alone (it says so once), and the records are the same.
        index = 0 if not marker else int(marker.split("!")[1]) // PAGE_SIZE + 1
        return Page(pages[index], 200, "application/xml")

    DirectReader.list_page = list_page  # type: ignore[method-assign]


def serve_importer() -> None:
    """The importer on stdio, its pages patched in, reporting its CPU at Close."""
    from kloset_sdk import serve
    from plakar_azblob.source import AzureImporter

    with open(os.environ[PAGES_ENV], "rb") as f:
        patch_listing(pickle.load(f))

    threads: dict[str, float] = {}

    class Measured(AzureImporter):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self._cpu0 = time.process_time()
            if os.environ.get("PERCORD_THREADS"):  # each thread's CPU, on stderr at Close
                threading.Thread(target=_watch_threads, args=(threads,), daemon=True).start()

        def close(self) -> None:
            cpu = time.process_time() - self._cpu0
            super().close()
            Path(os.environ[CPU_ENV]).write_text(repr(cpu))
            for name, seconds in sorted(threads.items(), key=lambda kv: -kv[1]):
                print(f"thread {name}: {seconds * 1e3:.0f} ms", file=sys.stderr)

    serve("importer", Measured)


def _watch_threads(seen: dict[str, float]) -> None:
    """Keep the CPU of each thread of this process (by its Python name), as last seen."""
    tick = os.sysconf("SC_CLK_TCK")
    start: dict[str, float] = {}
    while True:
        names = {t.native_id: t.name for t in threading.enumerate()}
        for tid in os.listdir("/proc/self/task"):
            try:
                fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / tick
            name = f"{names.get(int(tid), '?')}/{tid}"
            start.setdefault(name, cpu)
            seen[name] = cpu - start[name]
        time.sleep(0.02)


# -- the client's side --

def run_once(python: str, pages_file: str) -> tuple[float, int]:
    """One Import of the pages by ``python``'s importer: (its CPU in s, records)."""
    import grpc  # noqa: F401  (loaded before timing anything)
    from harness import ImporterRun, SplicePlugin

    with tempfile.NamedTemporaryFile(prefix="percord-cpu-") as cpu_file:
        env = dict(os.environ, **{PAGES_ENV: pages_file, CPU_ENV: cpu_file.name})
        plugin = SplicePlugin([python, str(Path(__file__).resolve()), "serve"], env)
        spy = None
        if os.environ.get("PERCORD_PYSPY"):  # a py-spy profile of the importer process
            spy = subprocess.Popen(["py-spy", "record", "-p", str(plugin.proc.pid), "-r", "500",
                                    "--gil", "--format", "raw", "-o", os.environ["PERCORD_PYSPY"]],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        try:
            run = ImporterRun(plugin.channel, CONFIG, 2)
            run.init()
            records = _import_all(run)
            run.close()
            cpu = float(Path(cpu_file.name).read_text())
        finally:
            plugin.close_stdin()
            if os.environ.get("PERCORD_THREADS"):
                print(plugin.stderr, end="")
            if spy is not None:
                spy.wait()
    return cpu, records


def _import_all(run: Any) -> int:
    """Import, acknowledging every record at once (none opened): the record count."""
    import queue

    from kloset_sdk._proto import connectors_pb2 as cpb
    from kloset_sdk._proto import importer_pb2 as ipb

    acks: queue.Queue[Any] = queue.Queue()

    def requests() -> Any:
        while (item := acks.get()) is not None:
            yield item

    call = run.stub.Import(requests(), timeout=3600)
    records = 0
    for resp in call:
        if resp.finished:
            break
        records += 1
        acks.put(ipb.ImportRequest(result=cpb.Result(header=resp.record)))
    acks.put(None)
    for _ in call:
        pass
    return records


def measure(pythons: list[str], blobs: int, runs: int) -> None:
    pages = make_pages(blobs)
    with tempfile.NamedTemporaryFile(prefix="percord-pages-", suffix=".pickle") as f:
        pickle.dump(pages, f)
        f.flush()
        results: dict[str, list[float]] = {p: [] for p in pythons}
        counts: dict[str, int] = {}
        for i in range(runs):
            for python in pythons if i % 2 == 0 else pythons[::-1]:
                cpu, records = run_once(python, f.name)
                results[python].append(cpu / records * 1e6)
                counts[python] = records
                print(f"  {python}: {cpu * 1e3:.0f} ms CPU, {records} records, "
                      f"{cpu / records * 1e6:.1f} us/record, {cpu / blobs * 1e6:.1f} us/blob",
                      flush=True)
    print(f"{blobs} blobs, {runs} runs each (interleaved):")
    for python, values in results.items():
        print(f"  {python}: median {statistics.median(values):.1f} us/record "
              f"(range {min(values):.1f}-{max(values):.1f}), {counts[python]} records")


# -- in one process, for profiling --

def profile(blobs: int, sort: str) -> None:
    """scan + serialisation + the acknowledgements' parsing, under cProfile."""
    import cProfile
    import pstats

    from kloset_sdk import Options
    from kloset_sdk._services import importer as service
    from kloset_sdk._wire.rpc import Many
    from plakar_azblob.source import AzureImporter

    patch_listing(make_pages(blobs))
    adapter = service.ImporterService(AzureImporter)
    imp = AzureImporter("azblob", CONFIG, Options())
    adapter._connector = imp  # as Init leaves it
    from kloset_sdk._services.common import methods

    table = methods("importer.Importer", adapter)["/importer.Importer/Import"]

    class Context:
        def abort(self, code: Any, details: str) -> None:
            raise RuntimeError(details)

    def work() -> int:
        acks: deque[bytes] = deque()
        n = 0
        for sent in adapter.Import(iter(()), Context()):
            for response in sent if isinstance(sent, Many) else (sent,):
                data = table.serialize(response) if table.serialize else response
                # What plakar sends back: the record as its Result's header, LAG records
                # behind (the wire's windows let the importer run that far ahead).
                acks.append(b"\x0a" + _varint(len(data)) + data)
                n += 1
                if len(acks) > LAG:
                    consume(acks.popleft())
        while acks:
            consume(acks.popleft())
        return n

    def consume(ack: bytes) -> None:
        adapter._openers.acknowledged(service._key(table.parse(ack).result.header))

    start = time.process_time()
    n = work()
    print(f"unprofiled: {(time.process_time() - start) / n * 1e6:.1f} us/record ({n} records)")
    patch_listing(make_pages(blobs))
    prof = cProfile.Profile()
    prof.runcall(work)
    pstats.Stats(prof).sort_stats(sort).print_stats(35)
    imp.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve_importer()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="measure", choices=("measure", "profile"))
    parser.add_argument("--blobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", action="append", default=[])
    parser.add_argument("--sort", default="tottime")
    args = parser.parse_args()
    if args.mode == "profile":
        profile(args.blobs, args.sort)
    else:
        measure(args.python or [sys.executable], args.blobs, args.runs)


if __name__ == "__main__":
    main()
