"""The azblob destination connector against Azurite, driven like the SDK drives it."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azurite import Azurite, free_port

from kloset_sdk import (
    CHUNK_SIZE,
    ConnectorError,
    IncomingContent,
    LocationFlag,
    Options,
    Record,
    each_record,
    iter_chunks,
)
from plakar_azblob.destination import AzureExporter
from plakar_azblob.mapping.attributes import default_content_type
from plakar_azblob.source import AzureImporter

MiB = 1024 * 1024
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def feeding(chunks: Iterable[bytes]) -> IncomingContent:
    """Content that a thread feeds in, chunk by chunk, as the SDK does from plakar."""
    incoming = IncomingContent()

    def feed() -> None:
        for chunk in chunks:
            for start in range(0, len(chunk), CHUNK_SIZE):
                incoming.feed(chunk[start:start + CHUNK_SIZE])
        incoming.finish()

    threading.Thread(target=feed, daemon=True).start()
    return incoming


def file(path: str, size: int) -> Record:
    return Record.file(path, size=size, mod_time=NOW, opener=None)


def export_file(exporter: AzureExporter, path: str, data: bytes) -> None:
    exporter.export(file(path, len(data)), feeding([data]))


def export_xattr(exporter: AzureExporter, path: str, name: str, value: bytes) -> None:
    exporter.export(Record.xattr(path, name, lambda: [value]), feeding([value]))


class Target:
    def __init__(self, azurite: Azurite, prefix: str = "") -> None:
        self.azurite = azurite
        self.name = f"dest-{uuid.uuid4().hex[:12]}"
        self.prefix = prefix
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        self.container: ContainerClient = service.get_container_client(self.name)

    def config(self) -> dict[str, str]:
        location = f"azblob://{self.name}" + (f"/{self.prefix}" if self.prefix else "")
        return {"location": location, "connection_string": self.azurite.connection_string}

    def exporter(self) -> AzureExporter:
        return AzureExporter("azblob", self.config(), Options())

    def blobs(self) -> dict[str, bytes]:
        return {b.name: self.container.download_blob(b.name).readall()
                for b in self.container.list_blobs()}


@pytest.fixture
def target(azurite: Azurite) -> Target:
    return Target(azurite, "restored/here")


def test_identity(target: Target) -> None:
    exporter = target.exporter()
    assert exporter.type == "azblob"
    assert exporter.flags == LocationFlag.EXPORTXATTR
    assert exporter.root == "/restored/here"
    assert exporter.origin.endswith(f"/{target.name}")
    exporter.ping()  # the container does not exist yet: fine, it is created on write


def test_round_trip_of_files(target: Target) -> None:
    exporter = target.exporter()
    big = os.urandom(20 * MiB + 5)
    files = {
        "/dir/a.txt": b"hello",
        "/empty.bin": b"",
        "/big/20mib.bin": big,
        "/ünï cødé #?%+&/x.json": b"{}",
        "/archive.tar.gz": b"\x1f\x8b not really",
    }
    exporter.export(Record.directory("/"), None)
    exporter.export(Record.directory("/dir"), None)
    exporter.export(Record.symlink("/link", "dir/a.txt"), None)
    for path, data in files.items():
        export_file(exporter, path, data)
    exporter.close()
    assert target.blobs() == {"restored/here" + p: d for p, d in files.items()}
    settings = {p: target.container.get_blob_client("restored/here" + p)
                .get_blob_properties().content_settings.content_type for p in files}
    assert settings == {
        "/dir/a.txt": "text/plain",
        "/empty.bin": "application/octet-stream",
        "/big/20mib.bin": "application/octet-stream",
        "/ünï cødé #?%+&/x.json": "application/json",
        "/archive.tar.gz": "application/gzip",
    }
    committed, _ = target.container.get_blob_client("restored/here/big/20mib.bin") \
        .get_block_list("committed")
    assert len(committed) == 6  # 4 MiB blocks


def test_concurrent_exports(target: Target) -> None:
    exporter = target.exporter()
    files = {f"/many/{i:03d}.bin": os.urandom(i * 37 * 1024) for i in range(40)}
    files["/many/big.bin"] = os.urandom(9 * MiB)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: export_file(exporter, *item), files.items()))
    exporter.close()
    assert target.blobs() == {"restored/here" + p: d for p, d in files.items()}


def test_directories_and_symlinks_write_nothing(target: Target) -> None:
    exporter = target.exporter()
    exporter.export(Record.directory("/"), None)
    exporter.export(Record.directory("/only/dirs"), None)
    exporter.export(Record.symlink("/only/link", "/etc/passwd"), None)
    exporter.export(Record.failure("/broken", "could not read"), None)
    exporter.close()
    with pytest.raises(ResourceNotFoundError):
        target.container.get_container_properties()


def test_container_created_when_missing_and_kept_when_present(target: Target) -> None:
    export_file(target.exporter(), "/one", b"1")
    export_file(target.exporter(), "/two", b"2")  # the container exists now: fine
    assert target.blobs() == {"restored/here/one": b"1", "restored/here/two": b"2"}


@pytest.mark.parametrize("path", ["/../escape.txt", "/a/../../escape.txt", "/./x", "/"])
def test_paths_leaving_the_prefix_are_refused(target: Target, path: str) -> None:
    exporter = target.exporter()
    with pytest.raises(ConnectorError, match="cannot restore"):
        export_file(exporter, path, b"no")
    export_file(exporter, "/fine", b"yes")
    assert target.blobs() == {"restored/here/fine": b"yes"}


def test_no_prefix(azurite: Azurite) -> None:
    target = Target(azurite)
    export_file(target.exporter(), "/top.txt", b"top")
    assert target.blobs() == {"top.txt": b"top"}


def test_upload_error_is_reported_for_the_record(target: Target) -> None:
    exporter = target.exporter()
    export_file(exporter, "/ok", b"fine")
    # A blob under an active lease cannot be overwritten without the lease ID.
    target.container.get_blob_client("restored/here/x").upload_blob(b"old")
    target.container.get_blob_client("restored/here/x").acquire_lease(-1)
    with pytest.raises(ConnectorError, match="cannot write blob 'restored/here/x'"):
        export_file(exporter, "/x", b"data")
    export_file(exporter, "/after", b"still fine")
    assert target.blobs() == {"restored/here/ok": b"fine", "restored/here/x": b"old",
                              "restored/here/after": b"still fine"}


def test_refused_credentials_stop_the_restore_at_init(azurite: Azurite) -> None:
    wrong = base64.b64encode(b"w" * 64).decode()
    config = Target(azurite).config()
    config["connection_string"] = re.sub(r"AccountKey=[^;]*", f"AccountKey={wrong}",
                                         azurite.connection_string)
    with pytest.raises(ConnectorError) as raised:
        AzureExporter("azblob", config, Options())
    # Azure says AuthenticationFailed, Azurite AuthorizationFailure.
    assert str(raised.value) == (f"cannot restore to {config['location']}: the account key "
                                 "was refused (wrong key, or not allowed by the account's "
                                 "network rules) (AuthorizationFailure, HTTP 403)")
    assert wrong not in str(raised.value)


def test_unreachable_endpoint_stops_the_restore_at_init(azurite: Azurite) -> None:
    config = Target(azurite).config() | {
        "connection_string": azurite.connection_string.replace(
            f":{azurite.port}/", f":{free_port()}/")}
    with pytest.raises(ConnectorError, match=r"^cannot restore to azblob://dest-\w+: cannot "
                                             r"reach http://127\.0\.0\.1:\d+/devstoreaccount1: "
                                             r"connection refused$"):
        AzureExporter("azblob", config, Options())


def test_a_read_only_sas_is_refused_at_init(target: Target) -> None:
    sas = "sv=2024-08-04&sp=rl&sr=c&se=2099-01-01&sig=c2lnbmF0dXJl"
    config = {"location": f"azblob://{target.name}", "sas_token": sas,
              "endpoint": target.azurite.endpoint}
    with pytest.raises(ConnectorError) as raised:
        AzureExporter("azblob", config, Options())
    assert str(raised.value) == ('sas_token cannot write blobs (its permissions are "rl"): a '
                                 "destination needs w (write) or c (create)")


def test_xattrs_set_properties_metadata_and_tier(target: Target) -> None:
    exporter = target.exporter()
    export_file(exporter, "/doc.html", b"<p>hi</p>")
    export_file(exporter, "/other.txt", b"other")
    md5 = base64.b64encode(hashlib.md5(b"<p>hi</p>").digest())
    attrs = {
        "azure.content-type": b"text/x-custom",
        "azure.content-encoding": b"identity",
        "azure.content-language": b"de",
        "azure.content-disposition": b"inline",
        "azure.cache-control": b"no-cache",
        "azure.content-md5": md5,
        "azure.access-tier": b"Cool",
        "azure.blob-type": b"BlockBlob",
        "azure.meta.owner": b"bob",
        "azure.meta.Project": b"Plakar",
        "user.from-a-filesystem": b"ignored",
    }
    for name, value in attrs.items():
        export_xattr(exporter, "/doc.html", name, value)
    export_xattr(exporter, "/other.txt", "azure.meta.k", b"v")
    # Nothing is applied before the end: uploads may still be running.
    blob = target.container.get_blob_client("restored/here/doc.html")
    assert blob.get_blob_properties().metadata == {}
    exporter.close()
    props = blob.get_blob_properties()
    s = props.content_settings
    assert (s.content_type, s.content_encoding, s.content_language, s.content_disposition,
            s.cache_control) == ("text/x-custom", "identity", "de", "inline", "no-cache")
    assert s.content_md5 is not None and base64.b64encode(bytes(s.content_md5)) == md5
    assert props.metadata == {"owner": "bob", "Project": "Plakar"}
    assert props.blob_tier == "Cool"
    other = target.container.get_blob_client("restored/here/other.txt").get_blob_properties()
    assert other.metadata == {"k": "v"}
    assert other.content_settings.content_type == "text/plain"  # untouched


def test_xattrs_of_a_missing_blob_only_warn(target: Target,
                                            caplog: pytest.LogCaptureFixture) -> None:
    exporter = target.exporter()
    export_file(exporter, "/present", b"p")
    export_xattr(exporter, "/absent", "azure.meta.k", b"v")
    with caplog.at_level(logging.WARNING):
        exporter.close()
    assert "does not exist" in caplog.text


def test_bad_xattr_value_is_an_error_for_that_record(target: Target) -> None:
    exporter = target.exporter()
    with pytest.raises(ConnectorError, match="not valid text"):
        export_xattr(exporter, "/x", "azure.content-md5", b"not base64!")
    with pytest.raises(ConnectorError, match="not valid text"):
        export_xattr(exporter, "/x", "azure.meta.k", b"\xff\xfe")
    exporter.close()


def test_backup_then_restore_keeps_bytes_and_properties(azurite: Azurite) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    source = service.create_container(f"trip-{uuid.uuid4().hex[:12]}")
    blobs = {"x/page.html": b"<html/>", "x/y/data.bin": os.urandom(6 * MiB), "x/zero": b""}
    for name, data in blobs.items():
        source.upload_blob(name, data, metadata={"origin": name.replace("/", "_")},
                           content_settings=ContentSettings(content_type="app/" + name[-3:],
                                                            cache_control="private"))
    # Typical blobs: their type is the default of their name, no metadata. They
    # carry no attribute at all, and come back the same.
    plain = {"x/doc.txt": b"plain text", "x/big.bin": os.urandom(5 * MiB)}
    for name, data in plain.items():
        source.upload_blob(name, data, content_settings=ContentSettings(
            content_type=default_content_type(name)))
    importer = AzureImporter("azblob", {"location": f"azblob://{source.container_name}/x",
                                        "connection_string": azurite.connection_string},
                             Options())
    target = Target(azurite, "copy")
    exporter = target.exporter()
    records = list(each_record(importer.scan()))
    # plakar restores /x as the root: paths relative to it.
    for record in sorted(records, key=lambda r: r.is_xattr):
        if record.error:
            continue
        relative = record.pathname.removeprefix("/x") or "/"
        if not record.pathname.startswith("/x"):
            continue
        content = feeding(_read(record)) if record.has_reader else None
        exporter.export(replace(record, pathname=relative), content)
    exporter.close()
    assert not [r for r in records if r.is_xattr and r.pathname in ("/x/doc.txt", "/x/big.bin")]
    everything = {**blobs, **plain}
    assert target.blobs() == {"copy/" + n.removeprefix("x/"): d for n, d in everything.items()}
    for name, data in everything.items():
        props = target.container.get_blob_client("copy/" + name.removeprefix("x/")) \
            .get_blob_properties()
        # The MD5 of the bytes, whether they were sent in one request or in blocks.
        md5 = props.content_settings.content_md5
        assert md5 is not None and bytes(md5) == hashlib.md5(data).digest(), name
        if name in plain:
            assert props.metadata == {}
            assert props.content_settings.content_type == default_content_type(name)
            continue
        assert props.metadata == {"origin": name.replace("/", "_")}
        assert props.content_settings.content_type == "app/" + name[-3:]
        assert props.content_settings.cache_control == "private"


def _read(record: Record) -> Iterator[bytes]:
    assert record.opener is not None
    return iter_chunks(record.opener())
