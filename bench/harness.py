"""Bench-side helpers to reach connectors: plakar's end of the stdio pipes, emulated.

:class:`SplicePlugin` is ``tests/stdio_plugin.StdioPlugin`` with its two
relay threads (bench's grpcio client socket <-> the plugin's pipes) moving
bytes with ``splice`` in the kernel instead of Python copies, so that the
bench's own relay costs as little as possible: plakar itself speaks HTTP/2
straight on the pipes and has no relay at all. :class:`SocketServer`
serves the same servicer directly on a Unix socket (no stdio at all).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from stdio_plugin import StdioPlugin  # noqa: E402

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 4 << 20),
    ("grpc.max_send_message_length", 4 << 20),
]


class SplicePlugin(StdioPlugin):
    """A connector spawned with two pipes; the bench's relay to them uses splice."""

    def _accept(self) -> None:
        conn, _ = self._listener.accept()
        self._conn = conn
        assert self.proc.stdin is not None and self.proc.stdout is not None
        stdin_fd, stdout_fd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        sock = conn.fileno()
        # Each pump owns duplicates and closes them when it ends (as the tests'
        # relay does): the originals are closed by close() while a pump may still
        # run, and a number closed there can be reused by any file opened next.
        threading.Thread(target=_pump_in, args=(os.dup(sock), os.dup(stdin_fd)),
                         daemon=True).start()
        threading.Thread(target=_pump_out, args=(os.dup(stdout_fd), os.dup(sock)),
                         daemon=True).start()


def _pump_in(sock: int, pipe: int) -> None:
    """Socket -> pipe: non-blocking splice (a blocking splice from a Unix socket can
    sit on data), waiting in poll() for data, then for room in the pipe."""
    import select

    readable, writable = select.poll(), select.poll()
    readable.register(sock, select.POLLIN)
    writable.register(pipe, select.POLLOUT)
    try:
        while True:
            try:
                if not os.splice(sock, pipe, 1 << 20, flags=os.SPLICE_F_NONBLOCK):
                    break
            except BlockingIOError:
                readable.poll()
                writable.poll()
    except OSError:
        pass
    finally:
        os.close(sock)
        os.close(pipe)


def _pump_out(pipe: int, sock: int) -> None:
    try:
        while os.splice(pipe, sock, 1 << 20):
            pass
    except OSError:
        pass
    finally:
        os.close(pipe)
        os.close(sock)


class SocketServer:
    """``python SCRIPT KIND --socket PATH``: the servicer on a Unix socket, no relay."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self._dir = tempfile.mkdtemp(prefix="bench-sock-")
        self.path = os.path.join(self._dir, "grpc.sock")
        self.proc = subprocess.Popen([*argv, "--socket", self.path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=dict(env or os.environ))
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{argv} did not start")
        self.channel = grpc.insecure_channel(f"unix:{self.path}", options=CHANNEL_OPTIONS)

    def close(self) -> None:
        self.channel.close()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for name in (self.path, self._dir):
            with contextlib.suppress(OSError):
                os.unlink(name) if name == self.path else os.rmdir(name)


# -- the three connectors driven the way plakar drives them --

def plugin_argv(kind: str) -> list[str]:
    """The venv's ``plakar-azblob KIND`` (what the dev package's wrapper execs)."""
    return [str(Path(sys.executable).parent / "plakar-azblob"), kind]


class ImporterRun:
    """Init + Import + concurrent Opens of the file records, acknowledged like plakar does."""

    def __init__(self, channel: grpc.Channel, config: dict[str, str], concurrency: int) -> None:
        from kloset_grpc import importer_pb2_grpc as ipb_grpc

        self.stub = ipb_grpc.ImporterStub(channel)  # type: ignore[no-untyped-call]
        self.config = config
        self.concurrency = concurrency

    def init(self) -> None:
        from kloset_sdk._proto import importer_pb2 as ipb

        self.stub.Init(ipb.InitRequest(proto="azblob", config=self.config,
                                       options=ipb.Options(maxconcurrency=self.concurrency)),
                       timeout=60, wait_for_ready=True)

    def run(self, open_files: bool = True) -> tuple[int, int]:
        """Import everything; Open every file record (not xattrs) unless told not to.

        Returns (files opened or seen, content bytes received)."""
        import queue
        from concurrent.futures import ThreadPoolExecutor

        from kloset_sdk._proto import connectors_pb2 as cpb
        from kloset_sdk._proto import importer_pb2 as ipb

        acks: queue.Queue[ipb.ImportRequest | None] = queue.Queue()

        def requests() -> Any:
            while (item := acks.get()) is not None:
                yield item

        def ack(record: Any) -> None:
            acks.put(ipb.ImportRequest(result=cpb.Result(header=record)))

        received = 0
        files = 0
        lock = threading.Lock()
        slots = threading.Semaphore(self.concurrency * 2)

        def open_one(record: Any) -> None:
            nonlocal received
            try:
                n = 0
                for resp in self.stub.Open(ipb.OpenRequest(record=record), timeout=3600):
                    n += len(resp.chunk)
                with lock:
                    received += n
                ack(record)
            finally:
                slots.release()

        call = self.stub.Import(requests(), timeout=3600)
        futures = []
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="open") as pool:
            for resp in call:
                if resp.finished:
                    break
                rec = resp.record
                if rec.hasReader and not rec.isXattr and not rec.error:
                    files += 1
                    if open_files:
                        slots.acquire()
                        futures.append(pool.submit(open_one, rec))
                        continue
                ack(rec)
            for f in futures:
                f.result()
        acks.put(None)
        for _ in call:
            pass
        return files, received

    def close(self) -> None:
        from kloset_sdk._proto import importer_pb2 as ipb

        self.stub.Close(ipb.CloseRequest(), timeout=60)


def export_files(channel: grpc.Channel, config: dict[str, str], concurrency: int,
                 files: list[tuple[str, int]], chunks: list[bytes]) -> int:
    """Init + one Export of ``files`` (path, size) whose content is ``chunks`` cycled.

    Returns the number of files the exporter reported as written."""
    from datetime import UTC, datetime

    from google.protobuf.timestamp_pb2 import Timestamp
    from kloset_grpc import exporter_pb2_grpc as epb_grpc

    from kloset_sdk._proto import connectors_pb2 as cpb
    from kloset_sdk._proto import exporter_pb2 as epb

    stub = epb_grpc.ExporterStub(channel)  # type: ignore[no-untyped-call]
    stub.Init(epb.InitRequest(proto="azblob", config=config,
                              options=epb.Options(maxconcurrency=concurrency)),
              timeout=60, wait_for_ready=True)
    now = Timestamp()
    now.FromDatetime(datetime.now(UTC))

    def requests() -> Any:
        yield epb.ExportRequest(record=cpb.Record(
            pathname="/", fileInfo=cpb.FileInfo(name="/", mode=0x80000000 | 0o755,
                                                mod_time=now)))
        k = 0
        for path, size in files:
            yield epb.ExportRequest(record=cpb.Record(
                pathname=path, hasReader=True,
                fileInfo=cpb.FileInfo(name=path.rsplit("/", 1)[-1], size=size, mode=0o644,
                                      mod_time=now)))
            left = size
            while left > 0:
                chunk = chunks[k % len(chunks)]
                k += 1
                if len(chunk) > left:
                    chunk = chunk[:left]
                yield epb.ExportRequest(chunk=chunk)
                left -= len(chunk)
            yield epb.ExportRequest(chunk=b"")

    ok = 0
    for resp in stub.Export(requests(), timeout=3600):
        if resp.result.error:
            raise RuntimeError(f"export of {resp.result.header.pathname}: {resp.result.error}")
        if resp.result.header.hasReader:
            ok += 1
    stub.Close(epb.CloseRequest(), timeout=60)
    return ok


class StoreClient:
    """The storage connector's Put/Get, as plakar calls them."""

    def __init__(self, channel: grpc.Channel, config: dict[str, str],
                 proto: str = "azblob") -> None:
        from kloset_grpc import store_pb2_grpc as spb_grpc

        from kloset_sdk._proto import store_pb2 as spb

        self.pb = spb
        self.stub = spb_grpc.StoreStub(channel)  # type: ignore[no-untyped-call]
        self.stub.Init(spb.InitRequest(proto=proto, config=config), timeout=60,
                       wait_for_ready=True)

    def put(self, mac: bytes, size: int, chunks: list[bytes], start: int = 0) -> int:
        spb = self.pb

        def requests() -> Any:
            yield spb.PutRequest(mac=mac, type=spb.STORAGE_RESOURCE_PACKFILE)
            left, k = size, start
            while left > 0:
                chunk = chunks[k % len(chunks)]
                k += 1
                if len(chunk) > left:
                    chunk = chunk[:left]
                yield spb.PutRequest(chunk=chunk)
                left -= len(chunk)

        return int(self.stub.Put(requests(), timeout=3600).bytes_written)

    def get(self, mac: bytes) -> int:
        spb = self.pb
        return sum(len(r.chunk) for r in self.stub.Get(
            spb.GetRequest(mac=mac, type=spb.STORAGE_RESOURCE_PACKFILE), timeout=3600))

    def close(self) -> None:
        self.stub.Close(self.pb.CloseRequest(), timeout=60)
