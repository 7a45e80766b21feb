"""The SDK through its real stdio transport, driven by a grpcio client (no plakar)."""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from kloset_grpc import exporter_pb2_grpc as epb_grpc
from kloset_grpc import importer_pb2_grpc as ipb_grpc
from kloset_grpc import store_pb2_grpc as spb_grpc
from stdio_plugin import StdioPlugin, pydir_plugin

from kloset_sdk import filemode
from kloset_sdk._proto import connectors_pb2 as cpb
from kloset_sdk._proto import exporter_pb2 as epb
from kloset_sdk._proto import importer_pb2 as ipb
from kloset_sdk._proto import store_pb2 as spb

MiB = 1 << 20


@pytest.fixture
def private_tmp() -> Iterator[dict[str, str]]:
    """An environment whose (short) TMPDIR is ours, to see what the plugin leaves behind."""
    tmpdir = tempfile.mkdtemp(prefix="t-", dir="/tmp")
    yield {**os.environ, "TMPDIR": tmpdir}
    shutil.rmtree(tmpdir, ignore_errors=True)


def _store(tmp_path: Path, env: dict[str, str]) -> tuple[StdioPlugin, spb_grpc.StoreStub]:
    plugin = pydir_plugin("storage", env)
    stub = spb_grpc.StoreStub(plugin.channel)
    stub.Init(spb.InitRequest(proto="pydir", config={"location": f"pydir://{tmp_path}/store"}),
              timeout=10)
    return plugin, stub


def _put(stub: spb_grpc.StoreStub, mac: bytes, data: bytes) -> int:
    def requests() -> Iterator[spb.PutRequest]:
        yield spb.PutRequest(mac=mac, type=spb.STORAGE_RESOURCE_PACKFILE)
        for i in range(0, len(data), MiB):
            yield spb.PutRequest(chunk=data[i:i + MiB])
    return int(stub.Put(requests(), timeout=60).bytes_written)


def _get(stub: spb_grpc.StoreStub, mac: bytes, rng: tuple[int, int] | None = None) -> bytes:
    req = spb.GetRequest(mac=mac, type=spb.STORAGE_RESOURCE_PACKFILE)
    if rng is not None:
        req.range.offset, req.range.length = rng
    chunks = [r.chunk for r in stub.Get(req, timeout=60)]
    assert all(len(c) <= MiB for c in chunks)
    return b"".join(chunks)


def test_bad_config_fails_init_with_one_clear_line(
    tmp_path: Path, private_tmp: dict[str, str]
) -> None:
    plugin = pydir_plugin("importer", private_tmp)
    stub = ipb_grpc.ImporterStub(plugin.channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Init(ipb.InitRequest(proto="pydir", config={"location": "nope://x"}), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "location must look like pydir:///path, not 'nope://x'"
    with pytest.raises(grpc.RpcError) as err:
        stub.Init(ipb.InitRequest(proto="pydir", config={
            "location": f"pydir://{tmp_path}", "colour": "blue"}), timeout=10)
    assert err.value.details() == "unknown option 'colour'"
    assert plugin.close_stdin() < 1.0
    assert "Traceback" not in plugin.stderr  # quiet by default


def test_store_operations(
    tmp_path: Path, private_tmp: dict[str, str]
) -> None:
    plugin, stub = _store(tmp_path, private_tmp)
    stub.Create(spb.CreateRequest(config=b"\x00config\xff"), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        stub.Create(spb.CreateRequest(config=b"other"), timeout=10)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "already exists" in err.value.details()
    assert stub.Open(spb.OpenRequest(), timeout=10).config == b"\x00config\xff"

    empty, big = bytes(range(32)), hashlib.sha256(b"big").digest()
    payload = os.urandom(50 * MiB + 12345)
    assert _put(stub, empty, b"") == 0
    assert _put(stub, big, payload) == len(payload)
    assert _get(stub, empty) == b""
    assert _get(stub, big) == payload
    assert _get(stub, big, (3 * MiB - 7, 2 * MiB + 11)) == payload[3 * MiB - 7:5 * MiB + 4]
    assert _get(stub, big, (len(payload) - 5, 5)) == payload[-5:]

    listed = stub.List(spb.ListRequest(type=spb.STORAGE_RESOURCE_PACKFILE), timeout=10).macs
    assert sorted(listed) == sorted([empty, big])
    assert stub.List(spb.ListRequest(type=spb.STORAGE_RESOURCE_STATE), timeout=10).macs == []
    assert stub.Size(spb.SizeRequest(), timeout=10).size == len(payload) + len(b"\x00config\xff")
    assert stub.Mode(spb.ModeRequest(), timeout=10).mode == 6

    stub.Delete(spb.DeleteRequest(mac=empty, type=spb.STORAGE_RESOURCE_PACKFILE), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        _get(stub, empty)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == f"packfile {empty.hex()} does not exist"
    with pytest.raises(grpc.RpcError) as err:
        _get(stub, b"short")
    assert err.value.details() == "invalid MAC of 5 bytes (expected 32)"
    stub.Close(spb.CloseRequest(), timeout=10)
    assert plugin.close_stdin() < 1.0


def test_cancelled_calls_leave_the_plugin_serving_and_nothing_partial(
    tmp_path: Path, private_tmp: dict[str, str]
) -> None:
    plugin, stub = _store(tmp_path, private_tmp)
    stub.Create(spb.CreateRequest(config=b"c"), timeout=10)
    mac = hashlib.sha256(b"x").digest()
    data = os.urandom(40 * MiB)
    _put(stub, mac, data)
    for _ in range(3):
        call = stub.Get(spb.GetRequest(mac=mac, type=spb.STORAGE_RESOURCE_PACKFILE), timeout=30)
        assert len(next(call).chunk) == MiB
        call.cancel()
    # A Put whose client goes away mid-object leaves nothing visible. grpcio ends
    # the plugin's request stream as if plakar had finished, and reports the
    # cancellation a moment later; without waiting for it a few in a hundred of
    # these Puts were stored truncated, so try many.
    halves = [hashlib.sha256(b"half%d" % i).digest() for i in range(100)]
    for half in halves:
        gate: queue.Queue[None] = queue.Queue()

        def requests(half: bytes = half, gate: queue.Queue[None] = gate
                     ) -> Iterator[spb.PutRequest]:
            yield spb.PutRequest(mac=half, type=spb.STORAGE_RESOURCE_PACKFILE)
            yield spb.PutRequest(chunk=b"a" * 1000)
            gate.get()

        future = stub.Put.future(requests(), timeout=30)
        future.cancel()
        gate.put(None)
    assert _get(stub, mac) == data
    listed = stub.List(spb.ListRequest(type=spb.STORAGE_RESOURCE_PACKFILE), timeout=10).macs
    assert listed == [mac]
    assert plugin.close_stdin() < 1.0


def _tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    (root / "sub" / "deeper" / "big.bin").write_bytes(os.urandom(3 * MiB + 5))
    (root / "sub" / "exec.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "sub" / "exec.sh", 0o750)
    os.symlink("a.txt", root / "link")
    os.utime(root / "a.txt", (1_600_000_000.5, 1_600_000_000.5))


def test_import_records_open_and_acks(
    tmp_path: Path, private_tmp: dict[str, str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    plugin = pydir_plugin("importer", private_tmp)
    stub = ipb_grpc.ImporterStub(plugin.channel)
    init = stub.Init(ipb.InitRequest(proto="pydir", options=ipb.Options(maxconcurrency=4),
                                     config={"location": f"pydir://{src}"}), timeout=10)
    assert (init.type, init.root) == ("pydir", str(src))

    acks: queue.Queue[ipb.ImportRequest | None] = queue.Queue()
    stream = stub.Import(iter(acks.get, None), timeout=30)
    records: dict[str, cpb.Record] = {}
    for response in stream:
        if response.finished:
            break
        records[response.record.pathname] = response.record

    a = records[f"{src}/a.txt"]
    assert a.hasReader and a.fileInfo.size == 6 and a.fileInfo.mode == 0o644
    assert a.fileInfo.mod_time.seconds == 1_600_000_000 and a.fileInfo.mod_time.nanos == 500_000_000
    assert records[f"{src}/sub"].fileInfo.mode == filemode.DIR | 0o755
    assert not records[f"{src}/sub"].hasReader
    assert records[f"{src}/sub/exec.sh"].fileInfo.mode == 0o750
    link = records[f"{src}/link"]
    assert link.target == "a.txt" and link.fileInfo.mode & filemode.SYMLINK and not link.hasReader

    def read(pathname: str) -> bytes:
        req = ipb.OpenRequest(record=cpb.Record(pathname=pathname))
        chunks = [r.chunk for r in stub.Open(req, timeout=30)]
        assert all(0 < len(c) <= MiB for c in chunks)
        return b"".join(chunks)

    big = f"{src}/sub/deeper/big.bin"
    results: dict[str, bytes] = {}
    threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, read(p)))
               for p in (big, f"{src}/a.txt", f"{src}/empty")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[big] == (src / "sub/deeper/big.bin").read_bytes()
    assert results[f"{src}/a.txt"] == b"hello\n" and results[f"{src}/empty"] == b""

    with pytest.raises(grpc.RpcError) as err:
        read(f"{src}/no-such-file")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == f"{src}/no-such-file: does not exist"

    # Acknowledged records are forgotten: their content can no longer be opened.
    acks.put(ipb.ImportRequest(result=cpb.Result(header=a)))
    acks.put(None)
    assert list(stream) == []  # the stream ends once plakar half-closes
    with pytest.raises(grpc.RpcError) as err:
        read(f"{src}/a.txt")
    assert "does not exist" in err.value.details()
    stub.Close(ipb.CloseRequest(), timeout=10)
    assert plugin.close_stdin() < 1.0


def test_export_streams_content_and_answers_each_record(
    tmp_path: Path, private_tmp: dict[str, str]
) -> None:
    dst = tmp_path / "dst"
    plugin = pydir_plugin("exporter", private_tmp)
    stub = epb_grpc.ExporterStub(plugin.channel)
    stub.Init(epb.InitRequest(proto="pydir", options=epb.Options(maxconcurrency=3),
                              config={"location": f"pydir://{dst}"}), timeout=10)
    files = {f"/f{i}.bin": os.urandom(i * 700_000) for i in range(6)}

    def fi(name: str, size: int, mode: int) -> cpb.FileInfo:
        return cpb.FileInfo(name=name, size=size, mode=mode)

    def requests() -> Iterator[epb.ExportRequest]:
        root = fi("/", 0, filemode.DIR | 0o755)
        yield epb.ExportRequest(record=cpb.Record(pathname="/", fileInfo=root))
        for path, data in files.items():
            yield epb.ExportRequest(record=cpb.Record(pathname=path, hasReader=True,
                                                      fileInfo=fi(path[1:], len(data), 0o600)))
            for i in range(0, len(data), MiB):
                yield epb.ExportRequest(chunk=data[i:i + MiB])
            yield epb.ExportRequest(chunk=b"")
        yield epb.ExportRequest(record=cpb.Record(pathname="/../escape", hasReader=True,
                                                  fileInfo=fi("escape", 3, 0o644)))
        yield epb.ExportRequest(chunk=b"abc")
        yield epb.ExportRequest(chunk=b"")

    answers = {r.result.header.pathname: r.result for r in stub.Export(requests(), timeout=60)}
    assert set(answers) == {"/", *files, "/../escape"}
    assert answers["/../escape"].error == "ValueError: /../escape leaves the destination"
    for path, data in files.items():
        assert answers[path].error == ""
        assert answers[path].header.fileInfo.size == len(data)  # the header comes back whole
        assert (dst / path[1:]).read_bytes() == data
        assert (dst / path[1:]).stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "escape").exists()
    stub.Close(epb.CloseRequest(), timeout=10)
    assert plugin.close_stdin() < 1.0


def test_exit_after_eof_leaves_nothing_behind(
    tmp_path: Path, private_tmp: dict[str, str]
) -> None:
    plugin, stub = _store(tmp_path, private_tmp)
    stub.Ping(spb.PingRequest(), timeout=10)
    # The socket file and its private directory are gone once connected.
    assert os.listdir(private_tmp["TMPDIR"]) == []
    elapsed = plugin.close_stdin()
    assert elapsed < 1.0
    assert plugin.proc.returncode == 0


def test_exits_when_killed_mid_stream(
    tmp_path: Path, private_tmp: dict[str, str]
) -> None:
    """plakar dying mid-call closes the pipes: the plugin must not linger."""
    plugin, stub = _store(tmp_path, private_tmp)
    stub.Create(spb.CreateRequest(config=b"c"), timeout=10)
    mac = hashlib.sha256(b"y").digest()
    _put(stub, mac, os.urandom(30 * MiB))
    call = stub.Get(spb.GetRequest(mac=mac, type=spb.STORAGE_RESOURCE_PACKFILE), timeout=30)
    next(call)
    assert plugin.close_stdin() < 1.0


NOISY = """
import os, sys
sys.path.insert(0, {tests!r})
from pydir_connector import DirStore
from kloset_sdk import serve

class Noisy(DirStore):
    def __init__(self, proto, config):
        print("a stray print")
        os.write(1, b"a raw write to fd 1\\n")
        super().__init__(proto, config)

    def ping(self):
        raise RuntimeError("boom")

serve("storage", Noisy)
"""


def test_stray_output_cannot_corrupt_the_stream(
    tmp_path: Path, private_tmp: dict[str, str]
) -> None:
    code = NOISY.format(tests=str(Path(__file__).parent))
    plugin = StdioPlugin([sys.executable, "-c", code], {**private_tmp, "KLOSET_LOG": "debug"})
    stub = spb_grpc.StoreStub(plugin.channel)
    stub.Init(spb.InitRequest(proto="pydir", config={"location": f"pydir://{tmp_path}"}),
              timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        stub.Ping(spb.PingRequest(), timeout=10)
    assert err.value.details() == "RuntimeError: boom"
    assert stub.Mode(spb.ModeRequest(), timeout=10).mode == 6  # the stream is intact
    assert plugin.close_stdin() < 1.0
    assert "a stray print" in plugin.stderr and "a raw write to fd 1" in plugin.stderr
    assert "Traceback" in plugin.stderr  # at debug level only
