"""The azblob source connector against Azurite, on a tricky dataset."""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

import pytest
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient, ContentSettings
from azurite import ACCOUNT, Azurite

from kloset_sdk import (
    ConnectorError,
    NotFoundError,
    Options,
    PermissionDeniedError,
    Record,
    each_record,
    filemode,
    iter_chunks,
)
from plakar_azblob.source import AzureImporter
from plakar_azblob.transfer.direct import FALLBACKS, DirectReader
from plakar_azblob.transfer.listing import Listed, http_date, list_blobs

MiB = 1024 * 1024
BIG = 64 * MiB
LONG_NAME = "long/" + "/".join(["d" * 99] * 10) + "/" + "f" * 19  # 1024 characters
assert len(LONG_NAME) == 1024

GZIPPED = gzip.compress(b"compressed text " * 100)
ALL_PROPS = ContentSettings(
    content_type="application/x-test", content_encoding="gzip", content_language="fr-FR",
    content_disposition='attachment; filename="all.bin"', cache_control="max-age=60",
    content_md5=bytearray(hashlib.md5(GZIPPED).digest()),
)

# name -> content; markers and folders are 0-byte.
FILES: dict[str, bytes] = {
    "plain.txt": b"hello\n",
    "empty.bin": b"",
    "props/all.bin": GZIPPED,
    "ünïcødé/日本語 ファイル.txt": "こんにちは".encode(),
    "emoji 😀.txt": b"smile",
    "special/sp ace #hash ?q %25 +plus &amp;.txt": b"special",
    LONG_NAME: b"long",
    "deep/a/b/c/d/e/f/g/file.txt": b"deep",
    "markers/with-kids/kid.txt": b"kid",
    "markers/hdi/child.txt": b"child",
    "markers/hdi-1.txt": b"between the marker and its children",
    "conflict/x.txt": b"sibling",
    "conflict/x/y": b"under x",
    "a/b/in.txt": b"in",
    "a/b/sub/in2.txt": b"in too",
    "a/bc/out.txt": b"out",
    "a/b-out.txt": b"out too",
}
MARKERS = ["markers/empty-dir/", "markers/with-kids/"]
FOLDERS = ["markers/hdi", "markers/hdi-empty"]
# Files that are also folders (of conflict/x/y, a/b/in.txt): not under prefix "a/b".
CONFLICTS = ["conflict/x", "a/b"]
INVALID = ["bad//double", "/leading-slash"]


@dataclass
class Dataset:
    azurite: Azurite
    container: ContainerClient
    big_sha256: str
    props: dict[str, Any] = field(default_factory=dict)  # blob name -> BlobProperties

    def config(self, prefix: str = "", **extra: str) -> dict[str, str]:
        location = f"azblob://{self.container.container_name}" + (f"/{prefix}" if prefix else "")
        return {"location": location, "connection_string": self.azurite.connection_string,
                **extra}

    def importer(self, prefix: str = "", options: Options | None = None) -> AzureImporter:
        return AzureImporter("azblob", self.config(prefix), options or Options())


@pytest.fixture(scope="module")
def dataset(azurite: Azurite) -> Dataset:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container(f"source-{uuid.uuid4().hex[:12]}")
    for name, data in FILES.items():
        container.upload_blob(name, data)
    props = container.get_blob_client("props/all.bin")
    props.set_http_headers(ALL_PROPS)
    props.set_blob_metadata({"owner": "alice", "Project": "Plakar"})
    props.set_standard_blob_tier("Cool")
    big = os.urandom(BIG)
    container.get_blob_client("big/64mib.bin").upload_blob(big, max_concurrency=4)
    for name in MARKERS:
        container.upload_blob(name, b"")
    for name in FOLDERS:
        container.upload_blob(name, b"", metadata={"hdi_isfolder": "true"})
    for name in CONFLICTS:
        container.upload_blob(name, b"both a file and a folder")
    for name in INVALID:
        container.upload_blob(name, b"invalid")
    log = container.get_blob_client("logs/append.log")
    log.create_append_blob()
    log.append_block(b"line 1\n")
    ds = Dataset(azurite, container, hashlib.sha256(big).hexdigest())
    ds.props = {b.name: b for b in container.list_blobs(include=["metadata"])}
    return ds


def scan(importer: AzureImporter) -> list[Record]:
    return list(each_record(importer.scan()))


def content(record: Record) -> bytes:
    assert record.opener is not None
    return b"".join(iter_chunks(record.opener()))


def by_path(records: list[Record]) -> dict[str, Record]:
    items = [r for r in records if not r.is_xattr and not r.error]
    counts = Counter(r.pathname for r in items)
    assert all(n == 1 for n in counts.values()), f"paths seen twice: {counts}"
    return {r.pathname: r for r in items}


def expected_dirs(names: list[str]) -> set[str]:
    dirs = {"/"}
    for name in names:
        parts = name.rstrip("/").split("/")
        stop = len(parts) if name.endswith("/") or name in FOLDERS else len(parts) - 1
        for i in range(1, stop + 1):
            dirs.add("/" + "/".join(parts[:i]))
    return dirs


@pytest.fixture(scope="module")
def records(dataset: Dataset) -> list[Record]:
    return scan(dataset.importer())


# -- the whole container --

def test_identity(dataset: Dataset) -> None:
    imp = dataset.importer()
    assert imp.type == "azblob"
    assert imp.root == "/"
    assert imp.origin == f"127.0.0.1:{dataset.azurite.port}/{ACCOUNT}/" \
                         f"{dataset.container.container_name}"
    assert dataset.importer("a/b").root == "/a/b"
    assert "Eby8" not in imp.origin
    imp.ping()


def test_files_are_exactly_the_blobs(dataset: Dataset, records: list[Record]) -> None:
    files = {p: r for p, r in by_path(records).items()
             if r.file_info is not None and r.file_info.is_regular}
    not_files = MARKERS + FOLDERS + INVALID + CONFLICTS
    expected = {n for n in dataset.props if n not in not_files}
    assert set(files) == {"/" + n for n in expected}
    for name in expected:
        record, props = files["/" + name], dataset.props[name]
        assert record.file_info is not None
        assert record.file_info.size == props.size
        assert record.file_info.mod_time == props.last_modified
        assert record.file_info.mode == 0o644
        # Blobs with no convention in their metadata (see test_convention_records):
        # no other field than a file system's defaults.
        assert (record.file_info.mod_time_nanos, record.file_info.ino, record.file_info.uid,
                record.file_info.gid, record.file_info.nlink) == (0, 0, 0, 0, 1)
        assert record.file_info.name == name.rsplit("/", 1)[-1]
        assert record.has_reader and record.opener is not None
    assert files["/" + LONG_NAME].file_info is not None


def test_directories_once_each(dataset: Dataset, records: list[Record]) -> None:
    dirs = {p: r for p, r in by_path(records).items()
            if r.file_info is not None and r.file_info.is_dir}
    names = [n for n in dataset.props if n not in INVALID]
    assert set(dirs) == expected_dirs(names)
    for record in dirs.values():
        assert record.file_info is not None
        assert filemode.perm(record.file_info.mode) == 0o755
        assert not record.has_reader


def test_directory_mtime_is_the_newest_inside(dataset: Dataset, records: list[Record]) -> None:
    dirs = {p: r.file_info.mod_time for p, r in by_path(records).items()
            if r.file_info is not None and r.file_info.is_dir}

    def newest(prefix: str) -> datetime:
        times: list[datetime] = [
            p.last_modified for n, p in dataset.props.items()
            if (n.startswith(prefix) or n + "/" == prefix) and n not in INVALID + CONFLICTS]
        return max(times)

    assert dirs["/"] == newest("")
    assert dirs["/deep/a/b"] == newest("deep/a/b/")
    assert dirs["/markers/hdi"] == newest("markers/hdi/")
    assert dirs["/markers/hdi-empty"] == dataset.props["markers/hdi-empty"].last_modified
    assert dirs["/markers/empty-dir"] == dataset.props["markers/empty-dir/"].last_modified


def test_markers_are_directories_not_files(records: list[Record]) -> None:
    paths = by_path(records)
    for name in MARKERS + FOLDERS:
        info = paths["/" + name.rstrip("/")].file_info
        assert info is not None and info.is_dir


def test_invalid_names_and_conflicts_are_failures(records: list[Record]) -> None:
    failures = {r.pathname: r.error for r in records if r.error}
    assert set(failures) == {"/" + n for n in INVALID + CONFLICTS}
    assert "empty path segment" in failures["/bad//double"]
    assert "both a file and a directory" in failures["/conflict/x"]


def test_xattrs_of_a_blob_with_every_property(dataset: Dataset, records: list[Record]) -> None:
    path = "/props/all.bin"
    record = by_path(records)[path]
    values = {r.xattr_name: content(r) for r in records if r.is_xattr and r.pathname == path}
    assert values == {
        "azure.content-type": b"application/x-test",
        "azure.content-encoding": b"gzip",
        "azure.content-language": b"fr-FR",
        "azure.content-disposition": b'attachment; filename="all.bin"',
        "azure.cache-control": b"max-age=60",
        "azure.access-tier": b"Cool",
        "azure.meta.owner": b"alice",
        "azure.meta.Project": b"Plakar",
    }
    assert set(record.extended_attributes) == set(values)
    # The xattr records come right after their file record.
    index = records.index(record)
    assert all(r.is_xattr and r.pathname == path
               for r in records[index + 1:index + 1 + len(values)])


def test_every_file_lists_exactly_its_xattr_records(dataset: Dataset,
                                                     records: list[Record]) -> None:
    listed = {r.pathname: set(r.extended_attributes) for r in records
              if r.file_info is not None and r.file_info.is_regular}
    sent: dict[str, set[str]] = {}
    for r in records:
        if r.is_xattr:
            assert r.has_reader and r.key == f"xattr:{r.pathname}:{r.xattr_name}"
            sent.setdefault(r.pathname, set()).add(r.xattr_name)
    assert {p: n for p, n in listed.items() if n} == sent
    # A typical blob has none: its Content-Type is the default of its name
    # (application/octet-stream for .bin), its MD5 is computed again on
    # restore, its tier is inferred and a block blob's type is left out.
    assert dataset.props["empty.bin"].content_settings.content_md5 is not None
    assert listed["/empty.bin"] == set()
    # plain.txt was uploaded as application/octet-stream, not the text/plain
    # its name gives: that is kept. An append blob says what it is.
    assert dataset.props["plain.txt"].content_settings.content_type == "application/octet-stream"
    assert listed["/plain.txt"] == {"azure.content-type"}
    assert listed["/logs/append.log"] == {"azure.blob-type"}
    values = {r.xattr_name: content(r) for r in records
              if r.is_xattr and r.pathname == "/logs/append.log"}
    assert values["azure.blob-type"] == b"AppendBlob"


def test_content_is_the_blob(dataset: Dataset, records: list[Record]) -> None:
    paths = by_path(records)
    for name, data in FILES.items():
        assert content(paths["/" + name]) == data, name
    # Content-Encoding gzip: the raw bytes, not decompressed.
    assert content(paths["/props/all.bin"]) == GZIPPED


def test_big_blob_streams_in_bounded_chunks(dataset: Dataset, records: list[Record]) -> None:
    record = by_path(records)["/big/64mib.bin"]
    assert record.opener is not None
    digest = hashlib.sha256()
    sizes = []
    for chunk in cast(Iterator[bytes], record.opener()):
        sizes.append(len(chunk))
        digest.update(chunk)
    assert digest.hexdigest() == dataset.big_sha256
    assert sum(sizes) == BIG and max(sizes) <= 4 * MiB


# -- the listing --

def test_listing_reads_what_the_sdk_reads(dataset: Dataset,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    container = dataset.container
    sdk = [Listed.from_sdk(b) for b in container.list_blobs(include=["metadata"])]
    direct = DirectReader.for_client(container, 4)
    assert direct is not None
    assert list(list_blobs(container, direct, None, page_size=7)) == sdk
    by_name = {b.name: b for b in sdk}
    props = by_name["props/all.bin"]
    assert (props.content_type, props.access_tier, props.tier_inferred, props.metadata) == (
        "application/x-test", "Cool", False, {"owner": "alice", "Project": "Plakar"})
    assert by_name["logs/append.log"].blob_type == "AppendBlob"
    assert by_name["markers/hdi"].metadata == {"hdi_isfolder": "true"}
    # A prefix of awkward characters, one blob per page.
    name = "special/sp ace #hash ?q %25 +plus &amp;.txt"
    assert [b.name for b in list_blobs(container, direct, name[:-8], page_size=1)] == [name]
    # Without a direct path (an SDK whose client changed), the SDK lists, and it counts.
    before = FALLBACKS["listing"]
    assert list(list_blobs(container, None, None, page_size=5)) == sdk
    assert FALLBACKS["listing"] == before + 1


def test_http_dates() -> None:
    assert http_date("Wed, 02 Dec 2026 04:28:49 GMT") == datetime(
        2026, 12, 2, 4, 28, 49, tzinfo=timezone.utc)
    assert http_date("Wed, 02 Dec 2026 05:28:49 +0100") == datetime(
        2026, 12, 2, 4, 28, 49, tzinfo=timezone.utc)


# -- laziness and consistency --

@pytest.fixture
def download_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the blobs whose content is asked for, directly or through the SDK."""
    calls: list[str] = []
    real = BlobClient.download_blob
    real_direct = DirectReader.read

    def counting(self: BlobClient, *args: Any, **kwargs: Any) -> Any:
        calls.append(self.blob_name)
        return real(self, *args, **kwargs)

    def counting_direct(self: DirectReader, name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return real_direct(self, name, *args, **kwargs)

    monkeypatch.setattr(BlobClient, "download_blob", counting)
    monkeypatch.setattr(DirectReader, "read", counting_direct)
    return calls


def test_scan_downloads_nothing(dataset: Dataset, download_calls: list[str]) -> None:
    records = scan(dataset.importer())
    assert len(records) > len(FILES)
    assert download_calls == []
    # Reading the xattrs costs no request either: they came with the listing.
    for r in records:
        if r.is_xattr:
            content(r)
    assert download_calls == []
    content(by_path(records)["/plain.txt"])
    assert download_calls == ["plain.txt"]


def test_open_after_change_or_delete_fails_clearly(dataset: Dataset) -> None:
    dataset.container.upload_blob("volatile/changed.txt", b"before")
    dataset.container.upload_blob("volatile/deleted.txt", b"before")
    paths = by_path(scan(dataset.importer("volatile")))
    dataset.container.upload_blob("volatile/changed.txt", b"after!", overwrite=True)
    dataset.container.delete_blob("volatile/deleted.txt")
    for name in ("changed", "deleted"):
        with pytest.raises(ConnectorError, match="changed or was deleted after it was listed"):
            content(paths[f"/volatile/{name}.txt"])


def test_change_during_a_big_download_fails(dataset: Dataset) -> None:
    blob = dataset.container.get_blob_client("volatile/big-changing.bin")
    blob.upload_blob(b"1" * 12 * MiB)
    record = by_path(scan(dataset.importer("volatile")))["/volatile/big-changing.bin"]
    assert record.opener is not None
    chunks = iter_chunks(record.opener())
    got = next(chunks)
    blob.upload_blob(b"2" * 12 * MiB, overwrite=True)
    # The blob is streamed in one request: the service goes on sending the version
    # the request started with. Either that version whole, or an error: never a mix.
    try:
        got += b"".join(chunks)
    except ConnectorError as exc:
        assert "changed or was deleted" in str(exc)
    else:
        assert got == b"1" * 12 * MiB
    # A read that starts after the change fails.
    importer = dataset.importer("volatile")
    blob.upload_blob(b"3" * 12 * MiB, overwrite=True)
    record = by_path(scan(importer))["/volatile/big-changing.bin"]
    blob.upload_blob(b"4" * 12 * MiB, overwrite=True)
    assert record.opener is not None
    with pytest.raises(ConnectorError, match="changed or was deleted"):
        list(iter_chunks(record.opener()))


# -- prefix, options, errors --

def test_prefix_scoping(dataset: Dataset) -> None:
    records = scan(dataset.importer("a/b"))
    paths = by_path(records)
    files = {p for p, r in paths.items() if r.file_info is not None and r.file_info.is_regular}
    assert files == {"/a/b/in.txt", "/a/b/sub/in2.txt"}
    assert set(paths) - files == {"/", "/a", "/a/b", "/a/b/sub"}
    assert not [r for r in records if r.error]


def test_prefix_with_percent_encoding_and_spaces(dataset: Dataset) -> None:
    paths = by_path(scan(dataset.importer("special")))
    assert "/special/sp ace #hash ?q %25 +plus &amp;.txt" in paths
    paths = by_path(scan(dataset.importer("%C3%BCn%C3%AFc%C3%B8d%C3%A9")))
    assert "/ünïcødé/日本語 ファイル.txt" in paths


def test_empty_prefix_gives_just_the_root(dataset: Dataset) -> None:
    records = scan(dataset.importer("nothing/here"))
    assert [r.pathname for r in records] == ["/nothing/here", "/", "/nothing"]


def test_noxattr(dataset: Dataset) -> None:
    records = scan(dataset.importer("props", Options(noxattr=True)))
    assert not [r for r in records if r.is_xattr]
    assert by_path(records)["/props/all.bin"].extended_attributes == ()


def test_missing_container(dataset: Dataset) -> None:
    config = dataset.config() | {"location": "azblob://no-such-container"}
    imp = AzureImporter("azblob", config, Options())
    with pytest.raises(NotFoundError, match="container does not exist"):
        scan(imp)
    with pytest.raises(NotFoundError):
        imp.ping()


def test_bad_credentials(dataset: Dataset) -> None:
    wrong = base64.b64encode(b"not the key" * 6).decode()
    config = {"location": f"azblob://{dataset.container.container_name}",
              "account_name": ACCOUNT, "account_key": wrong, "endpoint": dataset.azurite.endpoint}
    with pytest.raises(PermissionDeniedError) as raised:
        scan(AzureImporter("azblob", config, Options()))
    assert wrong not in str(raised.value)
    assert "\n" not in str(raised.value)
