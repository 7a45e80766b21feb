"""Conventions as records and back: the source and the destination on Azurite, driven
like the SDK drives them (the end-to-end tests through plakar and rclone are in
test_conventions.py)."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
import uuid
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from azurite import Azurite

from kloset_sdk import IncomingContent, Options, Record, each_record, filemode, from_ns
from plakar_azblob.mapping.posix_fields import etag_ino
from plakar_azblob.source import AzureImporter

T = 1583066096123456789  # 2020-03-01 12:34:56.123456789 UTC
RCLONE_T = "2020-03-01T12:34:56.123456789Z"


def container_of(azurite: Azurite, kind: str) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.create_container(f"{kind}-{uuid.uuid4().hex[:12]}")


def importer(azurite: Azurite, container: ContainerClient) -> AzureImporter:
    return AzureImporter("azblob", {"location": f"azblob://{container.container_name}",
                                    "connection_string": azurite.connection_string}, Options())


def scanned(azurite: Azurite, container: ContainerClient) -> dict[str, Record]:
    """The records of a scan by path (xattr records left out)."""
    imp = importer(azurite, container)
    try:
        return {r.pathname: r for r in each_record(imp.scan()) if not r.is_xattr}
    finally:
        imp.close()


def info_of(record: Record) -> tuple[int, int, int, int]:
    """(time in ns, permissions, uid, gid) of a record."""
    fi = record.file_info
    assert fi is not None, record
    return fi.mod_time_ns, fi.mode & 0o777, fi.uid, fi.gid


@pytest.fixture
def container(azurite: Azurite) -> Iterator[ContainerClient]:
    made = container_of(azurite, "conv")
    try:
        yield made
    finally:
        made.delete_container()


# -- the source --

def test_records_of_each_convention(azurite: Azurite, container: ContainerClient) -> None:
    container.upload_blob("plain.txt", b"plain", metadata={"owner": "alice"})
    container.upload_blob("rclone.bin", b"r" * 10, metadata={
        "mtime": RCLONE_T, "mode": "100750", "uid": "1234", "gid": "5678"})
    container.upload_blob("azcopy.sh", b"a", metadata={
        "modtime": str(T), "permissions": str(0o100700), "posix_owner": "11",
        "posix_group": "12"})
    container.upload_blob("lustre.txt", b"l", metadata={
        "modtime": "2020-03-01 12:34:56 +0000", "permissions": "0640", "owner": "42",
        "group": "43"})
    records = scanned(azurite, container)
    plain = records["/plain.txt"].file_info
    assert plain is not None
    assert (plain.mode, plain.ino, plain.uid, plain.mod_time_nanos) == (0o644, 0, 0, 0)
    assert info_of(records["/rclone.bin"]) == (T, 0o750, 1234, 5678)
    assert info_of(records["/azcopy.sh"]) == (T, 0o700, 11, 12)
    assert info_of(records["/lustre.txt"]) == (T // 10**9 * 10**9, 0o640, 42, 43)
    # The directory holding them is dated by the newest original time, not an upload.
    etags = {b.name: b.etag for b in container.list_blobs()}
    for name in ("rclone.bin", "azcopy.sh", "lustre.txt"):
        fi = records["/" + name].file_info
        assert fi is not None and filemode.is_regular(fi.mode)
        assert fi.ino == etag_ino(etags[name]) != 0
    # The metadata is still captured, as attributes, and named on the record.
    assert "azure.meta.mtime" in records["/rclone.bin"].extended_attributes


def test_a_rewrite_under_the_same_time_changes_the_record(
    azurite: Azurite, container: ContainerClient,
) -> None:
    """What plakar compares to skip a file must differ (here ino: the ETag's hash)."""
    container.upload_blob("f.bin", b"A" * 100, metadata={"mtime": RCLONE_T})
    first = scanned(azurite, container)["/f.bin"].file_info
    container.upload_blob("f.bin", b"B" * 100, metadata={"mtime": RCLONE_T}, overwrite=True)
    second = scanned(azurite, container)["/f.bin"].file_info
    assert first is not None and second is not None
    assert (first.size, first.mod_time_ns, first.mode) == \
        (second.size, second.mod_time_ns, second.mode)
    assert first.ino != second.ino
    assert first != second


def test_azcopy_symlinks_and_folders(azurite: Azurite, container: ContainerClient,
                                     caplog: pytest.LogCaptureFixture) -> None:
    link_meta = {"modtime": str(T), "permissions": str(0o120777), "posix_owner": "5",
                 "posix_group": "6", "is_symlink": "true", "is_char_dev": "true"}
    container.upload_blob("lnk", b"target dir/f.txt", metadata=link_meta)
    container.upload_blob("long-lnk", b"x" * 4096, metadata=link_meta)
    container.upload_blob("empty-lnk", b"", metadata={"modtime": str(T), "is_symlink": "true",
                                                      "permissions": "0777", "owner": "0"})
    container.upload_blob("nul-lnk", b"a\0b", metadata=link_meta)
    container.upload_blob("folder", b"", metadata={
        "modtime": str(T), "permissions": str(0o40710), "posix_owner": "7",
        "posix_group": "8", "hdi_isfolder": "true"})
    container.upload_blob("folder/in.txt", b"in", metadata={"modtime": str(T + 10**12)})
    with caplog.at_level(logging.DEBUG, logger="plakar_azblob.source"):
        records = scanned(azurite, container)
    link = records["/lnk"]
    assert link.file_info is not None and link.file_info.is_symlink
    assert link.target == "target dir/f.txt"
    assert info_of(link) == (T, 0o777, 5, 6)
    assert "azure.meta.is_symlink" in link.extended_attributes
    # Not a target a link can have: backed up as the files they are.
    for name in ("long-lnk", "empty-lnk", "nul-lnk"):
        fi = records["/" + name].file_info
        assert fi is not None and fi.is_regular, name
    assert sum("flagged is_symlink" in r.getMessage() for r in caplog.records) == 3
    folder = records["/folder"]
    assert folder.file_info is not None and folder.file_info.is_dir
    assert info_of(folder) == (T, 0o710, 7, 8)  # its own time, not the newer file's


def test_a_symlink_whose_target_cannot_be_read_is_a_failure(
    azurite: Azurite, container: ContainerClient,
) -> None:
    container.upload_blob("lnk", b"somewhere", metadata={"modtime": str(T),
                                                         "is_symlink": "true"})
    container.upload_blob("other", b"other")
    imp = importer(azurite, container)
    read = imp._open

    def deleted_first(name: str, etag: str, size: int) -> Iterator[bytes]:
        container.delete_blob(name)
        return read(name, etag, size)

    imp._open = deleted_first  # type: ignore[method-assign]
    try:
        records = list(each_record(imp.scan()))
    finally:
        imp.close()
    failed = [r for r in records if r.error]
    assert [r.pathname for r in failed] == ["/lnk"]
    assert "'lnk'" in failed[0].error and "deleted" in failed[0].error
    assert any(r.pathname == "/other" for r in records)


def test_malformed_values_are_one_debug_line_each_never_a_failure(
    azurite: Azurite, container: ContainerClient, caplog: pytest.LogCaptureFixture,
) -> None:
    container.upload_blob("bad", b"bad", metadata={"mtime": "yesterday", "mode": "9999",
                                                   "uid": "-1"})
    with caplog.at_level(logging.DEBUG, logger="plakar_azblob.mapping.conventions"):
        records = scanned(azurite, container)
    listed = next(iter(container.list_blobs()))
    assert info_of(records["/bad"]) == (int(listed.last_modified.timestamp()) * 10**9,
                                        0o644, 0, 0)
    assert records["/bad"].file_info.ino == 0  # type: ignore[union-attr]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all("blob 'bad'" in line for line in lines), lines


# -- the destination --

def feeding(data: bytes) -> IncomingContent:
    incoming = IncomingContent()

    def feed() -> None:
        incoming.feed(data)
        incoming.finish()

    threading.Thread(target=feed, daemon=True).start()
    return incoming


def restore(azurite: Azurite, container: ContainerClient, records: list[tuple[Record, bytes]],
            **options: str) -> dict[str, tuple[dict[str, str], bytes, str | None]]:
    """Export ``records`` (with their content) into ``container``: each blob's
    (metadata, bytes, Content-MD5 as base64)."""
    from plakar_azblob.destination import AzureExporter

    exporter = AzureExporter("azblob", {"location": f"azblob://{container.container_name}",
                                        "connection_string": azurite.connection_string,
                                        **options}, Options())
    for record, data in records:
        exporter.export(record, feeding(data) if record.has_reader else None)
    exporter.close()
    found = {}
    for blob in container.list_blobs(include=["metadata"]):
        md5 = blob.content_settings.content_md5
        found[blob.name] = (dict(blob.metadata), container.download_blob(blob.name).readall(),
                            base64.b64encode(md5).decode() if md5 else None)
    return found


def file_record(path: str, data: bytes, names: tuple[str, ...] = (), mode: int = 0o640,
                uid: int = 7, gid: int = 8) -> tuple[Record, bytes]:
    when, nanos = from_ns(T)
    record = Record.file(path, size=len(data), mod_time=when, mod_time_nanos=nanos,
                         opener=lambda: io.BytesIO(data), mode=mode, xattrs=names, uid=uid,
                         gid=gid)
    return record, data


def link_record(path: str, target: str, names: tuple[str, ...] = ()) -> tuple[Record, bytes]:
    when, nanos = from_ns(T)
    return Record.symlink(path, target, mod_time=when, mod_time_nanos=nanos, xattrs=names,
                          uid=3, gid=4), b""


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_default_style_is_the_one_each_file_came_with(
    azurite: Azurite, container: ContainerClient,
) -> None:
    """plakar v1.1.x sends each record the names of its attributes, not their values."""
    got = restore(azurite, container, [
        file_record("/plain.txt", b"plain", ("azure.meta.owner",)),
        file_record("/local.txt", b"from a file system"),
        file_record("/rclone.txt", b"r", ("azure.meta.mtime",)),
        file_record("/rclone-m.txt", b"m", ("azure.meta.mtime", "azure.meta.mode",
                                            "azure.meta.uid", "azure.meta.gid")),
        file_record("/azcopy.txt", b"a", ("azure.meta.modtime", "azure.meta.permissions",
                                          "azure.meta.posix_owner", "azure.meta.posix_group")),
        file_record("/amlfs.txt", b"l", ("azure.meta.modtime", "azure.meta.permissions",
                                         "azure.meta.owner", "azure.meta.group")),
        link_record("/azcopy-link", "azcopy.txt", ("azure.meta.modtime",
                                                   "azure.meta.is_symlink")),
        link_record("/local-link", "plain.txt"),
    ])
    assert {name: meta for name, (meta, _data, _md5) in got.items()} == {
        "plain.txt": {},
        "local.txt": {},
        "rclone.txt": {"mtime": RCLONE_T},
        "rclone-m.txt": {"mtime": RCLONE_T, "mode": "100640", "uid": "7", "gid": "8"},
        "azcopy.txt": {"modtime": str(T), "permissions": str(0o100640), "posix_owner": "7",
                       "posix_group": "8"},
        "amlfs.txt": {"modtime": "2020-03-01 12:34:56 +0000", "permissions": "0640",
                      "owner": "7", "group": "8"},
        "azcopy-link": {"modtime": str(T), "is_symlink": "true"},
    }
    assert got["azcopy-link"][1] == b"azcopy.txt"
    assert all(digest == md5(data) for _meta, data, digest in got.values())


@pytest.mark.parametrize("style", ["rclone", "azcopy", "none", "auto"])
def test_chosen_style_for_every_file(azurite: Azurite, container: ContainerClient,
                                     style: str) -> None:
    got = restore(azurite, container, [
        file_record("/a.txt", b"a"),
        file_record("/b.txt", b"b", ("azure.meta.mtime",)),
        link_record("/l", "a.txt"),
    ], metadata_style=style)
    metas = {name: meta for name, (meta, _data, _md5) in got.items()}
    if style == "rclone":
        full = {"mtime": RCLONE_T, "mode": "100640", "uid": "7", "gid": "8"}
        assert metas == {"a.txt": full, "b.txt": full,
                         "l.rclonelink": {"mtime": RCLONE_T, "mode": "120777", "uid": "3",
                                          "gid": "4"}}
        assert got["l.rclonelink"][1] == b"a.txt"
    elif style == "azcopy":
        full = {"modtime": str(T), "permissions": str(0o100640), "posix_owner": "7",
                "posix_group": "8"}
        assert metas == {"a.txt": full, "b.txt": full,
                         "l": {"modtime": str(T), "permissions": str(0o120777),
                               "posix_owner": "3", "posix_group": "4", "is_symlink": "true"}}
        assert got["l"][1] == b"a.txt"
    elif style == "none":
        assert metas == {"a.txt": {}, "b.txt": {}}
    else:
        assert metas == {"a.txt": {}, "b.txt": {"mtime": RCLONE_T}}
    assert all(digest == md5(data) for _meta, data, digest in got.values())
