"""Restore safety: no record path ever writes outside the destination prefix.

plakar itself never sends such paths, so the exporter connector is driven
directly over its stdio gRPC transport (as plakar does) with crafted
records: each unsafe one gets an error result of its own, the stream goes
on, and only the safe files exist afterwards, all under the prefix, with
exactly their bytes. The rule itself (:func:`plakar_azblob.mapping.paths.unsafe_name`)
is unit-tested below, for the destination (``blob_name``) and the source
(``invalid_name``, on blobs Azurite really holds).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from azblob_package import entry_point
from azure.storage.blob import BlobServiceClient
from azurite import Azurite
from kloset_grpc import exporter_pb2_grpc as epb_grpc
from stdio_plugin import StdioPlugin

from kloset_sdk import ConnectorError, Options, each_record, filemode
from kloset_sdk._proto import connectors_pb2 as cpb
from kloset_sdk._proto import exporter_pb2 as epb
from plakar_azblob.clients.config import parse_config
from plakar_azblob.mapping import paths
from plakar_azblob.source import AzureImporter

pytestmark = pytest.mark.azurite

MiB = 1 << 20
PREFIX = "safe/prefix"

# Records sent in this order: safe ones before and after the unsafe ones.
# path -> (blob name under the prefix, bytes): Azure stores "\\" as "/", and so
# does the exporter, so that the blob it names is the blob that exists.
SAFE: dict[str, tuple[str, bytes]] = {
    "/ok.txt": ("ok.txt", b"ok\n"),
    "/.hidden": (".hidden", b"a dot file"),
    "/dir\\file.txt": ("dir/file.txt", b"a backslash separates like a slash"),
    "/%2e%2e/pct.txt": ("%2e%2e/pct.txt", b"percent signs are kept as they are"),
    "/x..y/..z/a..": ("x..y/..z/a..", b"dots that are not a whole segment"),
    "/dots/...": ("dots/...", b"three dots: an ordinary name"),
}
EMPTY = ('an empty path segment (two separators in a row, or a leading or trailing one; '
         '"\\" counts as "/")')
UNSAFE: dict[str, str] = {
    "/a/../../escape": 'a ".." path segment',
    "/../x": 'a ".." path segment',
    "/a/./b": 'a "." path segment',
    "/a//b": EMPTY,
    "//abs": EMPTY,
    "/trailing/": EMPTY,
    "/a\\..\\b": 'a ".." path segment',
    "/..\\up": 'a ".." path segment',
    "/a/b\\..": 'a ".." path segment',
    "/a\\\\b": EMPTY,
    "/a\\/b": EMPTY,
    "/with\x00nul": "a NUL character",
    "/\x00": "a NUL character",
}
AFTER: dict[str, bytes] = {
    "/after/big.bin": os.urandom(2 * MiB + 123),  # several chunks
    "/after/small.txt": b"the stream went on",
}


def unsafe_message(path: str) -> str:
    return (f"cannot restore {path!r}: the path has {UNSAFE[path]} (refused so that nothing "
            "is written outside the destination prefix)")


# -- the rule, unit by unit --

CFG = parse_config({"location": f"azblob://dest/{PREFIX}", "account_name": "acct"}, "exporter")


@pytest.mark.parametrize("path", list(SAFE))
def test_blob_name_of_a_safe_path(path: str) -> None:
    assert paths.blob_name(CFG, path) == f"{PREFIX}/{SAFE[path][0]}"


@pytest.mark.parametrize("path", list(UNSAFE))
def test_blob_name_refuses_an_unsafe_path(path: str) -> None:
    with pytest.raises(ConnectorError) as raised:
        paths.blob_name(CFG, path)
    assert str(raised.value) == unsafe_message(path)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("path", ["/", ""])
def test_blob_name_of_no_file(path: str) -> None:
    with pytest.raises(ConnectorError, match="it names no file"):
        paths.blob_name(CFG, path)


def test_blob_name_without_prefix() -> None:
    cfg = parse_config({"location": "azblob://dest", "account_name": "acct"}, "exporter")
    assert paths.blob_name(cfg, "/a/b.txt") == "a/b.txt"
    with pytest.raises(ConnectorError):
        paths.blob_name(cfg, "/../b.txt")


@pytest.mark.parametrize(("name", "problem"), [
    ("ok.txt", None), ("dir/", None), ("a\\b", None), ("..x/y..", None),
    ("a//b", EMPTY), ("/lead", EMPTY), ("a\\/b", EMPTY),
    ("a/../b", 'a ".." path segment'),
    ("./a", 'a "." path segment'),
    ("a/.../", None), ("...", None),
    ("a\\..\\b", 'a ".." path segment'),
    ("..\\", 'a ".." path segment'),
    ("nul\x00/x", "a NUL character"),
])
def test_invalid_name_of_a_source_blob(name: str, problem: str | None) -> None:
    assert paths.invalid_name(name) == problem


# -- the destination connector over stdio --

def fi(path: str, size: int, mode: int) -> cpb.FileInfo:
    return cpb.FileInfo(name=path.rsplit("/", 1)[-1], size=size, mode=mode)


def file_requests(path: str, data: bytes) -> Iterator[epb.ExportRequest]:
    yield epb.ExportRequest(record=cpb.Record(pathname=path, hasReader=True,
                                              fileInfo=fi(path, len(data), 0o644)))
    for i in range(0, len(data), MiB):
        yield epb.ExportRequest(chunk=data[i:i + MiB])
    yield epb.ExportRequest(chunk=b"")


def test_unsafe_records_fail_alone_and_nothing_leaves_the_prefix(azurite: Azurite) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container(f"safety-{uuid.uuid4().hex[:10]}")
    plugin = StdioPlugin([str(entry_point()), "exporter"])
    try:
        stub = epb_grpc.ExporterStub(plugin.channel)
        stub.Init(epb.InitRequest(
            proto="azblob", options=epb.Options(maxconcurrency=3),
            config={"location": f"azblob://{container.container_name}/{PREFIX}",
                    "connection_string": azurite.connection_string}), timeout=30)

        def requests() -> Iterator[epb.ExportRequest]:
            root = fi("/", 0, filemode.DIR | 0o755)
            yield epb.ExportRequest(record=cpb.Record(pathname="/", fileInfo=root))
            for path, (_, data) in SAFE.items():
                yield from file_requests(path, data)
            for path in UNSAFE:
                yield from file_requests(path, f"must not be written: {path!r}".encode())
            # The root as a file, and an extended attribute of an unsafe path.
            yield from file_requests("/", b"a file with no name")
            yield epb.ExportRequest(record=cpb.Record(
                pathname="/a/../../escape", isXattr=True, xattrName="azure.content-type",
                hasReader=True))
            yield epb.ExportRequest(chunk=b"text/plain")
            yield epb.ExportRequest(chunk=b"")
            for path, data in AFTER.items():
                yield from file_requests(path, data)

        results = [r.result for r in stub.Export(requests(), timeout=120)]
        stub.Close(epb.CloseRequest(), timeout=30)
    finally:
        plugin.close_stdin()

    files = {r.header.pathname: r.error for r in results
             if not r.header.isXattr and r.header.hasReader}
    xattrs = {r.header.pathname: r.error for r in results if r.header.isXattr}
    dirs = {r.header.pathname: r.error for r in results if not r.header.hasReader}
    # One result per record, whatever happened to the ones before it.
    assert len(results) == 1 + len(SAFE) + len(UNSAFE) + 1 + 1 + len(AFTER)
    assert dirs == {"/": ""}
    for path in [*SAFE, *AFTER]:
        assert files[path] == "", (path, files[path])
    for path in UNSAFE:
        assert files[path] == unsafe_message(path)
    assert files["/"] == "cannot restore '/' as a blob: it names no file"
    assert xattrs == {"/a/../../escape": unsafe_message("/a/../../escape")}

    stored = {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}
    expected = {f"{PREFIX}/{name}": data for name, data in SAFE.values()}
    expected |= {f"{PREFIX}/{path[1:]}": data for path, data in AFTER.items()}
    assert stored == expected
    assert all(name.startswith(PREFIX + "/") for name in stored)
    container.delete_container()


# -- the source connector: blobs Azurite really holds under such names --

# Uploaded name -> the name the service keeps ("\\" becomes "/").
SOURCE_UNSAFE = {"a\\..\\b": "a/../b", "up\\..": "up/..",
                 "x\\.\\y": "x/./y", "a\\\\b": "a//b"}
SOURCE_SAFE = {"fine.txt": "fine.txt", "dir\\file.txt": "dir/file.txt", "dots/...": "dots/..."}


def test_source_reports_unsafe_blob_names_as_failures(azurite: Azurite) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container(f"unsafe-src-{uuid.uuid4().hex[:10]}")
    try:
        for name in [*SOURCE_UNSAFE, *SOURCE_SAFE]:
            container.upload_blob(name, name.encode())
        held = sorted(b.name for b in container.list_blobs())
        assert held == sorted([*SOURCE_UNSAFE.values(), *SOURCE_SAFE.values()])
        importer = AzureImporter("azblob", {
            "location": f"azblob://{container.container_name}",
            "connection_string": azurite.connection_string}, Options())
        records = [r for r in each_record(importer.scan()) if not r.is_xattr]
        failures = {r.pathname: r.error for r in records if r.error}
        files = {r.pathname for r in records
                 if not r.error and r.file_info is not None and r.file_info.is_regular}
        assert files == {"/" + n for n in SOURCE_SAFE.values()}
        assert set(failures) == {"/" + n for n in SOURCE_UNSAFE.values()}
        for name in SOURCE_UNSAFE.values():
            assert failures["/" + name] == (f"blob {name!r} is not a valid path: it has "
                                            f"{paths.invalid_name(name)}")
        importer.close()
    finally:
        container.delete_container()
