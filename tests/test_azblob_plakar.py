"""The azblob connectors end to end through the real plakar (v1.1.4) and Azurite.

A development package (the venv's ``plakar-azblob`` behind a shell wrapper)
is built with ``plakar pkg create`` and installed with ``plakar pkg add``;
every command below is the one a user types. Outcomes are checked on the
blobs themselves (names, bytes, properties) and on restored local trees
(bytes, modes, times).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azblob_helpers import (
    BIG,
    PROPS,
    SPECIAL,
    TRICKY,
    blob_bytes,
    blob_listing,
    expected_tree,
    fill_tricky,
    is_dir_blob,
    new_container,
    pk,
    restored_tree,
    sas,
    service,
)
from azurite import ACCOUNT, KEY, Azurite, start_azurite
from plakar_env import PASSPHRASE, PlakarEnv, output, snapshot_id
from tree_compare import make_sample_tree, snapshot

from plakar_azblob.mapping.attributes import default_content_type as content_type

pytestmark = [pytest.mark.plakar, pytest.mark.azurite]

MiB = 1024 * 1024


# -- helpers (the shared ones are in azblob_helpers) --

_LS_LINE = re.compile(r"^(\S+) (\S+)\s+\S+\s+\S+\s+(\S+ \S+) (/.*)$")


def ls_recursive(env: PlakarEnv, store: str, snap: str) -> dict[str, tuple[str, str, str]]:
    """``plakar ls -recursive``: path -> (date, mode, size)."""
    entries = {}
    for line in pk(env, "at", store, "ls", "-recursive", snap).stdout.splitlines():
        m = _LS_LINE.match(line)
        assert m, f"unexpected ls line: {line!r}"
        entries[m.group(4)] = (m.group(1), m.group(2), m.group(3))
    return entries


def utc(stamp: datetime) -> str:
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- a private Azurite whose request log can be read --

_CONTEXT = re.compile(r"^\S+ (\S+) \w+: BlobStorageContextMiddleware: "
                      r"Account=\S* Container=(\S*) Blob=(.*)$")
_OPERATION = re.compile(r"^\S+ (\S+) \w+: DispatchMiddleware: Operation=(\S+)")


@dataclass
class LoggedAzurite:
    server: Azurite
    log: Path

    def requests(self) -> list[tuple[str, str, str]]:
        """Every request served so far: (operation, container, blob), in order.

        A probe request is made and waited for first, so that the log holds
        everything that happened before this call.
        """
        probe = f"probe-{uuid.uuid4().hex[:10]}"
        service(self.server).get_container_client(probe).exists()
        deadline = time.monotonic() + 10
        while True:
            text = self.log.read_text(errors="replace")
            if f"Container={probe} " in text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        where: dict[str, tuple[str, str]] = {}
        seen = []
        for line in text.splitlines():
            if m := _CONTEXT.match(line):
                where[m.group(1)] = (m.group(2), m.group(3))
            elif (m := _OPERATION.match(line)) and m.group(1) in where:
                seen.append((m.group(2), *where[m.group(1)]))
        assert any(c == probe for _, c, _ in seen), "the Azurite log lags behind"
        return seen

    def downloads(self, container: str) -> list[str]:
        return [b for op, c, b in self.requests() if op == "Blob_Download" and c == container]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedAzurite]:
    log = tmp_path_factory.mktemp("azurite-log") / "debug.log"
    server = start_azurite(debug_log=log)
    try:
        yield LoggedAzurite(server, log)
    finally:
        server.stop()


# -- source connector --

def test_source_backup_tricky_container_restore_and_inspect(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path
) -> None:
    container = new_container(azurite, "tricky")
    big = fill_tricky(container)
    name = container.container_name
    pk(azplakar, "source", "add", "tricky", f"azblob://{name}",
       f"connection_string={azurite.connection_string}")
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    snap = snapshot_id(pk(azplakar, "at", store, "backup", "@tricky"))
    listing = pk(azplakar, "at", store, "ls").stdout
    assert re.search(rf"{snap}\s.*\s/$", listing, re.MULTILINE), listing

    # plakar's own exporter restores exactly the container: bytes, modes, times.
    pk(azplakar, "at", store, "restore", "-to", str(tmp_path / "restored"), snap)
    restored = restored_tree(tmp_path / "restored")
    expected = expected_tree(container)
    assert restored == expected
    assert hashlib.sha256(restored[BIG][3]).digest() == hashlib.sha256(big).digest()
    assert restored["markers/empty-dir"][0] == "dir" and restored["markers/hdi"][0] == "dir"
    assert restored["empty.bin"][3] == b""

    # `ls -recursive` shows the whole tree, intermediate directories included.
    props = {b.name: b for b in container.list_blobs()}
    entries = ls_recursive(azplakar, store, snap)
    assert set(entries) == {"/" + rel for rel in expected}
    for rel, (kind, *_rest) in expected.items():
        date, mode, _size = entries["/" + rel]
        if kind == "dir":
            assert mode == "drwxr-xr-x", (rel, mode)
        else:
            assert mode == "-rw-r--r--", (rel, mode)
            assert date == utc(props[rel].last_modified), rel
    assert entries["/my dir/sub/nested.bin"][2] == "1000 B"
    assert entries["/" + SPECIAL][2] == "18 B"
    assert "/long/" + "d" * 99 in entries

    # `cat` reads a file whose name has every awkward character.
    cat = pk(azplakar, "at", store, "cat", f"{snap}:/{SPECIAL}")
    assert cat.stdout == "special characters"

    # The blob's properties and metadata are visible as extended attributes.
    xattrs = pk(azplakar, "at", store, "diag", "xattr", snap).stdout.splitlines()
    for attr, value in [
        ("azure.content-type", "text/plain; charset=utf-8"),
        ("azure.content-language", "fr-FR"),
        ("azure.cache-control", "max-age=60"),
        ("azure.content-disposition", 'attachment; filename="plain.txt"'),
        ("azure.meta.owner", "alice"),
        ("azure.meta.purpose", "plakar-e2e"),
    ]:
        assert f"/{PROPS} {attr} {value}" in xattrs, (attr, xattrs)
    assert not [x for x in xattrs if " azure.blob-type " in x]  # block blobs only
    # Content-MD5 is never backed up (the destination computes it), nor a
    # Content-Type that the name gives anyway (.bin: application/octet-stream);
    # a .txt uploaded as application/octet-stream keeps its type.
    assert not [x for x in xattrs if " azure.content-md5 " in x]
    assert not [x for x in xattrs if x.startswith("/my dir/sub/nested.bin ")]
    assert f"/{SPECIAL} azure.content-type application/octet-stream" in xattrs
    # Directory markers carry no attributes.
    assert not [x for x in xattrs if x.startswith("/markers/hdi ")]


def test_source_backup_of_a_prefix_with_a_space(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path
) -> None:
    container = new_container(azurite, "prefix")
    for name, data in TRICKY.items():
        container.upload_blob(name, data)
    container.upload_blob("my dirt/not-inside.txt", b"a sibling prefix")
    pk(azplakar, "source", "add", "src", f"azblob://{container.container_name}",
       f"connection_string={azurite.connection_string}")
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    snap = snapshot_id(pk(azplakar, "at", store, "backup", "@src:my dir"))
    listing = pk(azplakar, "at", store, "ls").stdout
    assert re.search(rf"{snap}\s.*\s/my dir$", listing, re.MULTILINE), listing
    entries = ls_recursive(azplakar, store, snap)
    assert set(entries) == {"/my dir/sub", "/my dir/sub/nested.bin", "/" + SPECIAL}

    pk(azplakar, "at", store, "restore", "-to", str(tmp_path / "restored"), snap)
    restored = restored_tree(tmp_path / "restored")
    expected = expected_tree(container, "my dir")
    assert restored == expected
    assert set(restored) == {"sub", "sub/nested.bin", SPECIAL.removeprefix("my dir/")}

    # Every character plakar's URL formatter escapes comes back as it was.
    odd = "odd #?%41 100%"
    container.upload_blob(f"{odd}/f.txt", b"odd prefix")
    snap = snapshot_id(pk(azplakar, "at", store, "backup", f"@src:{odd}"))
    listing = pk(azplakar, "at", store, "ls").stdout
    assert re.search(rf"{snap}\s.*\s/{re.escape(odd)}$", listing, re.MULTILINE), listing
    assert pk(azplakar, "at", store, "cat", f"{snap}:/{odd}/f.txt").stdout == "odd prefix"


def test_incremental_backup_downloads_nothing(
    azplakar: PlakarEnv, logged: LoggedAzurite, tmp_path: Path
) -> None:
    container = new_container(logged.server, "incr")
    name = container.container_name
    files = {"a.txt": b"alpha", "dir/b.bin": os.urandom(300_000), "dir/sub/c.txt": b"gamma",
             "empty": b""}
    for blob, data in files.items():
        container.upload_blob(blob, data)
    pk(azplakar, "source", "add", "incr", f"azblob://{name}",
       f"connection_string={logged.server.connection_string}")
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")

    before = len(logged.downloads(name))
    first = snapshot_id(pk(azplakar, "at", store, "backup", "@incr"))
    got = logged.downloads(name)[before:]
    # Each non-empty blob is read exactly once (the counting pass reads nothing).
    assert sorted(b for b in got if b != "empty") == sorted(b for b in files if b != "empty")

    before = len(logged.downloads(name))
    second = snapshot_id(pk(azplakar, "at", store, "backup", "@incr"))
    assert logged.downloads(name)[before:] == []
    assert second != first
    assert ls_recursive(azplakar, store, second) == ls_recursive(azplakar, store, first)

    # A changed blob, and only it, is downloaded again.
    time.sleep(1.1)  # Last-Modified has a one-second resolution
    container.upload_blob("dir/sub/c.txt", b"gamma, changed", overwrite=True)
    before = len(logged.downloads(name))
    third = snapshot_id(pk(azplakar, "at", store, "backup", "@incr"))
    assert logged.downloads(name)[before:] == ["dir/sub/c.txt"]
    cat = pk(azplakar, "at", store, "cat", f"{third}:/dir/sub/c.txt")
    assert cat.stdout == "gamma, changed"


# -- storage connector --

_OBJECT = r"(?:packfiles|states|locks)/(?P<xx>[0-9a-f]{2})/(?P=xx)[0-9a-f]{62}"


def assert_store_layout(names: list[str], prefix: str) -> None:
    start = prefix + "/" if prefix else ""
    pattern = re.compile(rf"{re.escape(start)}(?:CONFIG|{_OBJECT})")
    bad = [n for n in names if not pattern.fullmatch(n)]
    assert not bad, f"blobs outside the Kloset layout: {bad}"


def test_store_life_cycle(azplakar: PlakarEnv, logged: LoggedAzurite, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_sample_tree(src)
    kstore = new_container(logged.server, "kstore")
    cname = kstore.container_name
    pk(azplakar, "store", "add", "azst", f"azblob://{cname}/some/prefix",
       f"account_name={ACCOUNT}", f"account_key={KEY}", f"endpoint={logged.server.endpoint}")
    pk(azplakar, "at", "@azst", "create")
    again = pk(azplakar, "at", "@azst", "create", ok=False)
    assert again.returncode != 0
    assert f"a Kloset store already exists at azblob://{cname}/some/prefix" in output(again)

    snap1 = snapshot_id(pk(azplakar, "at", "@azst", "backup", str(src)))
    check = pk(azplakar, "at", "@azst", "check")
    assert "check completed without errors" in output(check)
    assert re.search(rf"{snap1}\s.*\s{re.escape(str(src))}$",
                     pk(azplakar, "at", "@azst", "ls").stdout, re.MULTILINE)
    entries = ls_recursive(azplakar, "@azst", snap1)
    assert f"{src}/docs/deep/er/random.bin" in entries
    assert entries[f"{src}/docs/run.sh"][1] == "-rwxr-x---"
    cat = pk(azplakar, "at", "@azst", "cat", f"{snap1}:{src}/hello.txt")
    assert cat.stdout == "hello, plakar\n"
    pk(azplakar, "at", "@azst", "restore", "-to", str(tmp_path / "restored"), snap1)
    assert snapshot(tmp_path / "restored") == snapshot(src)

    # A second snapshot, the first removed, then maintenance.
    (src / "new.txt").write_text("added later\n")
    snap2 = snapshot_id(pk(azplakar, "at", "@azst", "backup", str(src)))
    pk(azplakar, "at", "@azst", "rm", "-apply", snap1)
    listing = pk(azplakar, "at", "@azst", "ls").stdout
    assert snap2 in listing and snap1 not in listing
    pk(azplakar, "at", "@azst", "maintenance")
    check = pk(azplakar, "at", "@azst", "check")
    assert "check completed without errors" in output(check)

    # sync to and from a local store. plakar takes a sync peer's passphrase from
    # its configuration, and leaves it there for the connector to see.
    pk(azplakar, "store", "add", "loc", str(tmp_path / "local"), f"passphrase={PASSPHRASE}")
    pk(azplakar, "at", "@loc", "create")
    pk(azplakar, "at", "@azst", "sync", "to", "@loc")
    assert snap2 in pk(azplakar, "at", "@loc", "ls").stdout
    pk(azplakar, "at", "@loc", "restore", "-to", str(tmp_path / "from-local"), snap2)
    assert snapshot(tmp_path / "from-local") == snapshot(src)
    (src / "newer.txt").write_text("made in the local store\n")
    snap3 = snapshot_id(pk(azplakar, "at", "@loc", "backup", str(src)))
    pk(azplakar, "at", "@azst", "sync", "from", "@loc")
    assert snap3 in pk(azplakar, "at", "@azst", "ls").stdout
    cat = pk(azplakar, "at", "@azst", "cat", f"{snap3}:{src}/newer.txt")
    assert cat.stdout == "made in the local store\n"

    # An azblob store as the sync peer (no prefix this time).
    kstore2 = new_container(logged.server, "kstore2")
    pk(azplakar, "store", "add", "azst2", f"azblob://{kstore2.container_name}",
       f"connection_string={logged.server.connection_string}", f"passphrase={PASSPHRASE}")
    pk(azplakar, "at", "@azst2", "create")
    pk(azplakar, "at", "@loc", "sync", snap2, "to", "@azst2")
    assert snap2 in pk(azplakar, "at", "@azst2", "ls").stdout
    assert "check completed without errors" in output(pk(azplakar, "at", "@azst2", "check"))
    pk(azplakar, "at", "@azst2", "restore", "-to", str(tmp_path / "from-azst2"), snap2)
    (src / "newer.txt").unlink()
    assert snapshot(tmp_path / "from-azst2") == snapshot(src)

    # Every blob ever written follows the Go connector's layout, locks included.
    names = [b.name for b in kstore.list_blobs()]
    assert "some/prefix/CONFIG" in names
    assert any(n.startswith("some/prefix/packfiles/") for n in names)
    assert any(n.startswith("some/prefix/states/") for n in names)
    assert_store_layout(names, "some/prefix")
    written = [(op, b) for op, c, b in logged.requests()
               if c == cname and op in ("BlockBlob_Upload", "BlockBlob_CommitBlockList",
                                        "BlockBlob_StageBlock", "Blob_Delete")]
    assert_store_layout([b for _, b in written], "some/prefix")
    locks = {b for _, b in written if b.startswith("some/prefix/locks/")}
    assert locks, "no lock was ever written"
    assert not [n for n in names if n.startswith("some/prefix/locks/")], "a lock was left"
    names2 = [b.name for b in kstore2.list_blobs()]
    assert "CONFIG" in names2
    assert_store_layout(names2, "")


# -- destination connector --

def test_destination_restore_from_local_and_from_azblob_backups(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_sample_tree(src)
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    local_snap = snapshot_id(pk(azplakar, "at", store, "backup", str(src)))

    # Restore of a local directory into a container that does not exist yet.
    target = f"restored-{uuid.uuid4().hex[:10]}"
    pk(azplakar, "destination", "add", "dst", f"azblob://{target}/out",
       f"connection_string={azurite.connection_string}")
    pk(azplakar, "at", store, "restore", "-to", "@dst", local_snap)
    restored = service(azurite).get_container_client(target)
    files = {str(p.relative_to(src)): p.read_bytes() for p in src.rglob("*")
             if p.is_file() and not p.is_symlink()}
    assert blob_bytes(restored) == {f"out/{rel}": data for rel, data in files.items()}
    types = {b.name: b.content_settings.content_type for b in restored.list_blobs()}
    assert types["out/hello.txt"] == "text/plain"
    assert types["out/docs/é ünïcode #1.txt"] == "text/plain"
    assert types["out/docs/deep/er/random.bin"] == "application/octet-stream"
    assert types == {name: content_type(name) for name in types}

    # Restore of an azblob backup into another container, with no prefix.
    source = new_container(azurite, "dsrc")
    fill_tricky(source)
    pk(azplakar, "source", "add", "tricky", f"azblob://{source.container_name}",
       f"connection_string={azurite.connection_string}")
    az_snap = snapshot_id(pk(azplakar, "at", store, "backup", "@tricky"))
    target2 = new_container(azurite, "dst2")
    pk(azplakar, "destination", "add", "dst2", f"azblob://{target2.container_name}",
       f"account_name={ACCOUNT}", f"account_key={KEY}", f"endpoint={azurite.endpoint}")
    pk(azplakar, "at", store, "restore", "-to", "@dst2", az_snap)
    originals = {n: d for n, d in blob_bytes(source).items() if not is_dir_blob(n)}
    assert blob_bytes(target2) == originals
    types = {b.name: b.content_settings.content_type for b in target2.list_blobs()}
    assert types[PROPS] == "text/plain"
    assert types[BIG] == "application/octet-stream"
    assert types["emoji 😀.txt"] == "text/plain"


# -- authentication through plakar --

def test_sas_token_store_and_read_only_sas(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_sample_tree(src)
    container = new_container(azurite, "sas")
    rw = sas(container, read=True, write=True, delete=True, list=True, add=True, create=True)
    pk(azplakar, "store", "add", "sasst", f"azblob://{container.container_name}/kloset",
       f"sas_token={rw}", f"endpoint={azurite.endpoint}")
    pk(azplakar, "at", "@sasst", "create")
    snap = snapshot_id(pk(azplakar, "at", "@sasst", "backup", str(src)))
    pk(azplakar, "at", "@sasst", "restore", "-to", str(tmp_path / "restored"), snap)
    assert snapshot(tmp_path / "restored") == snapshot(src)

    ro = sas(container, read=True, list=True)
    pk(azplakar, "store", "add", "rost", f"azblob://{container.container_name}/kloset",
       f"sas_token={ro}", f"endpoint={azurite.endpoint}")
    assert snap in pk(azplakar, "at", "@rost", "ls").stdout
    assert "check completed without errors" in output(pk(azplakar, "at", "@rost", "check"))
    pk(azplakar, "at", "@rost", "restore", "-to", str(tmp_path / "ro-restored"), snap)
    assert snapshot(tmp_path / "ro-restored") == snapshot(src)
    before = blob_listing(container)
    (src / "new.txt").write_text("never stored\n")  # new data: a packfile to write
    failed = pk(azplakar, "at", "@rost", "backup", str(src), ok=False)
    # Nothing was written: same blobs, same sizes, same ETags (not even a lock).
    assert blob_listing(container) == before
    assert {b.name for b in container.list_blobs(include=["uncommittedblobs"])} == set(before)
    text = output(failed)
    assert failed.returncode != 0
    assert "read-only" in text and "AuthorizationPermissionMismatch" in text, text
    assert "Traceback" not in text
    signature = dict(p.split("=", 1) for p in ro.split("&"))["sig"]
    assert signature not in text and ro not in text
    assert pk(azplakar, "at", "@rost", "ls").stdout.count("\n") == 1  # nothing was added


def test_sas_connection_string_and_anonymous_sources(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path
) -> None:
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")

    # A SAS inside a connection string.
    private = new_container(azurite, "private")
    private.upload_blob("a/x.txt", b"via a sas")
    token = sas(private, read=True, list=True)
    conn = f"BlobEndpoint={azurite.endpoint};SharedAccessSignature={token}"
    pk(azplakar, "source", "add", "bysas", f"azblob://{private.container_name}",
       f"connection_string={conn}")
    snap = snapshot_id(pk(azplakar, "at", store, "backup", "@bysas"))
    assert pk(azplakar, "at", store, "cat", f"{snap}:/a/x.txt").stdout == "via a sas"

    # no_auth=true on a public container.
    public = new_container(azurite, "public", public_access="container")
    public.upload_blob("pub/file.txt", b"public data")
    public.upload_blob("top.bin", os.urandom(2 * MiB + 1))
    pk(azplakar, "source", "add", "pub", f"azblob://{public.container_name}", "no_auth=true",
       f"endpoint={azurite.endpoint}")
    snap = snapshot_id(pk(azplakar, "at", store, "backup", "@pub"))
    pk(azplakar, "at", store, "restore", "-to", str(tmp_path / "pub"), snap)
    assert restored_tree(tmp_path / "pub") == expected_tree(public)

    # The same option on a private container: a clear refusal.
    pk(azplakar, "source", "add", "nopub", f"azblob://{private.container_name}",
       "no_auth=true", f"endpoint={azurite.endpoint}")
    failed = pk(azplakar, "at", store, "backup", "@nopub", ok=False)
    assert failed.returncode != 0
    assert f"cannot list azblob://{private.container_name}: " in output(failed)
    assert re.search(r"\(\w+, HTTP 40[34]\)$", output(failed).strip()), output(failed)
