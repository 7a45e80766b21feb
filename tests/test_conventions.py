"""Containers filled by rclone and azcopy, backed up and restored through the real plakar.

rclone (built by ``make rclone``, see tests/rclone_tool.py) fills a container
from local files dated 2020-2021, as a user would; azcopy's POSIX properties
(``--preserve-posix-properties``, both its styles) are written with the SDK
with the values its source writes (azcopy is not on the Go module proxy).
plakar backs them up with our source; the snapshot is restored into a
folder (plakar's own exporter: times, modes and owners come from our
records) and into another container (our destination), which rclone itself
then lists and checks. The keys and formats are in
docs/metadata-conventions.md.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azblob_helpers import new_container, pk, service
from azure.storage.blob import ContainerClient
from azurite import Azurite
from plakar_env import PlakarEnv, snapshot_id
from rclone_tool import Rclone

pytestmark = [pytest.mark.plakar, pytest.mark.azurite]

MiB = 1024 * 1024


def ns(text: str) -> int:
    """Nanoseconds since the epoch of ``2020-03-01 12:34:56.123456789`` (UTC)."""
    day, clock = text.split(" ")
    whole, _, frac = clock.partition(".")
    seconds = datetime.fromisoformat(f"{day}T{whole}+00:00").timestamp()
    return int(seconds) * 1_000_000_000 + int(frac.ljust(9, "0"))


def rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any number of fractional
    digits, ``Z`` or an offset)."""
    day, _, rest = text.partition("T")
    for sign in ("Z", "+", "-"):
        if sign in rest:
            clock, _, zone = rest.partition(sign)
            break
    whole, _, frac = clock.partition(".")
    offset = datetime.fromisoformat(f"{day}T{whole}{'+00:00' if sign == 'Z' else sign + zone}")
    return int(offset.timestamp()) * 1_000_000_000 + int(frac.ljust(9, "0"))


def as_plakar_restores(stamp: int) -> int:
    """The time plakar's fs exporter gives a restored file: lutimes takes
    microseconds, rounded up (Go's NsecToTimeval)."""
    return -(-stamp // 1000) * 1000


def rclone_time(stamp: int) -> str:
    """A time as ``rclone lsl`` prints it."""
    when = datetime.fromtimestamp(stamp // 1_000_000_000, UTC)
    return f"{when:%Y-%m-%d %H:%M:%S}.{stamp % 1_000_000_000:09d}"


@dataclass(frozen=True)
class Local:
    """A local file rclone uploads: relative path, content, time (ns), mode, owner."""

    path: str
    data: bytes
    mtime: int
    mode: int
    uid: int = 0
    gid: int = 0


# Five files dated 2020-2021: one of 9 MiB, one empty, one whose name has a
# space and non-ASCII letters, times with nanoseconds, modes and owners that
# are not the defaults (0644, 0:0).
LOCAL = [
    Local("big.bin", os.urandom(9 * MiB + 7), ns("2020-03-01 12:34:56.123456789"), 0o755,
          1234, 5678),
    Local("empty.txt", b"", ns("2021-07-04 01:02:03.987654321"), 0o640),
    Local("sub dir/ça va ü.txt", "héllo, wörld\n".encode(), ns("2020-11-11 11:11:11.5"),
          0o600, 4321, 8765),
    Local("plain.txt", b"plain\n", ns("2021-12-31 23:59:59"), 0o644),
    Local("notes/readme.md", b"# read me\n", ns("2020-01-01 00:00:00.000000001"), 0o444),
]
LINK = ("link", "plain.txt", ns("2021-01-01 00:00:00.5"))  # name, target, time


def write_local(root: Path, with_link: bool = True) -> None:
    for f in LOCAL:
        path = root / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.data)
        path.chmod(f.mode)
        if os.geteuid() == 0:
            os.chown(path, f.uid, f.gid)
        os.utime(path, ns=(f.mtime, f.mtime))
    if with_link:
        name, target, when = LINK
        os.symlink(target, root / name)
        os.utime(root / name, ns=(when, when), follow_symlinks=False)


@pytest.fixture
def rclone(azurite: Azurite) -> Iterator[Rclone]:
    tool = Rclone(azurite)
    try:
        yield tool
    finally:
        tool.close()


@pytest.fixture
def store(azplakar: PlakarEnv, tmp_path: Path) -> str:
    location = str(tmp_path / "store")
    pk(azplakar, "at", location, "create")
    return location


def add_source(env: PlakarEnv, azurite: Azurite, name: str, container: ContainerClient) -> None:
    pk(env, "source", "add", name, f"azblob://{container.container_name}",
       f"connection_string={azurite.connection_string}")


def backed_up(env: PlakarEnv, azurite: Azurite, store: str, container: ContainerClient) -> str:
    """The snapshot of a first backup of ``container`` (through the source ``src``)."""
    add_source(env, azurite, "src", container)
    return snapshot_id(pk(env, "at", store, "backup", "@src"))


def rclone_filled(env: PlakarEnv, azurite: Azurite, rclone: Rclone, store: str, local: Path,
                  *flags: str) -> tuple[ContainerClient, str]:
    """A container filled by ``rclone copy [flags] local``, and its first snapshot."""
    write_local(local, with_link="-l" in flags)
    src = new_container(azurite, "rclone-src")
    rclone.run("copy", *flags, str(local), rclone.remote(src.container_name))
    return src, backed_up(env, azurite, store, src)


def restored_folder(env: PlakarEnv, store: str, snap: str, out: Path) -> Path:
    pk(env, "at", store, "restore", "-to", str(out), snap)
    return out


def owners(env: PlakarEnv, store: str, snap: str) -> dict[str, tuple[str, str]]:
    """``plakar ls -recursive``'s owner and group columns by path (numeric where the
    machine has no such user): what plakar holds, as plakar v1.1.4's local restore
    chowns directories and symlinks (as root) but not regular files."""
    found = {}
    for line in pk(env, "at", store, "ls", "-recursive", snap).stdout.splitlines():
        _date, _mode, user, group, _size, _unit, path = line.split(None, 6)
        found[path] = (user, group)
    return found


def user_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_of(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def add_destination(env: PlakarEnv, azurite: Azurite, name: str, container: str,
                    *options: str) -> None:
    pk(env, "destination", "add", name, f"azblob://{container}",
       f"connection_string={azurite.connection_string}", *options)


def md5_of_every_blob(container: ContainerClient) -> dict[str, tuple[str | None, str]]:
    """name -> (Content-MD5 set on the blob, MD5 of its bytes), both base64."""
    found = {}
    for blob in container.list_blobs():
        data = container.download_blob(blob.name).readall()
        md5 = blob.content_settings.content_md5
        found[blob.name] = (base64.b64encode(md5).decode() if md5 else None,
                            base64.b64encode(hashlib.md5(data).digest()).decode())
    return found


# -- rclone --

def test_rclone_filled_container_restored_to_a_folder_has_the_original_times_modes_owners(
    azplakar: PlakarEnv, azurite: Azurite, rclone: Rclone, store: str, tmp_path: Path,
) -> None:
    """`rclone copy -M -l`: mtime, mode, uid and gid; the link's .rclonelink blob."""
    _src, snap = rclone_filled(azplakar, azurite, rclone, store, tmp_path / "local", "-M", "-l")
    out = restored_folder(azplakar, store, snap, tmp_path / "out")
    held = owners(azplakar, store, snap)
    for f in LOCAL:
        st = (out / f.path).lstat()
        assert (out / f.path).read_bytes() == f.data, f.path
        assert st.st_mtime_ns == as_plakar_restores(f.mtime), f.path
        assert stat.S_IMODE(st.st_mode) == f.mode, f.path
        if os.geteuid() == 0:  # the files were chowned to these
            assert held["/" + f.path] == (user_of(f.uid), group_of(f.gid)), f.path
    # The link rclone stored as link.rclonelink stays what rclone without -l makes
    # of it: a file holding the target (renaming it could collide with a blob
    # "link"); `rclone copy -l` of a restored container gives the link back.
    name, target, when = LINK
    link = out / f"{name}.rclonelink"
    assert link.read_bytes() == target.encode() and not (out / name).exists()
    assert link.lstat().st_mtime_ns == as_plakar_restores(when)
    assert stat.S_IMODE(link.lstat().st_mode) == 0o777


def test_rclone_without_metadata_flag_gives_times_and_default_modes(
    azplakar: PlakarEnv, azurite: Azurite, rclone: Rclone, store: str, tmp_path: Path,
) -> None:
    """Plain `rclone copy` (no -M): only `mtime`; modes stay 0644, owners 0."""
    _src, snap = rclone_filled(azplakar, azurite, rclone, store, tmp_path / "local")
    out = restored_folder(azplakar, store, snap, tmp_path / "out")
    for f in LOCAL:
        st = (out / f.path).lstat()
        assert st.st_mtime_ns == as_plakar_restores(f.mtime), f.path
        assert stat.S_IMODE(st.st_mode) == 0o644, f.path
    assert set(owners(azplakar, store, snap).values()) == {("root", "root")}


@pytest.mark.parametrize("options", [("metadata_style=rclone",), ()], ids=["option", "default"])
def test_rclone_sees_the_original_times_in_a_container_restored_by_plakar(
    azplakar: PlakarEnv, azurite: Azurite, rclone: Rclone, store: str, tmp_path: Path,
    options: tuple[str, ...],
) -> None:
    """Restored into another container: `rclone lsl` shows the original times (with
    the option, and by default since plakar v1.1.4 tells the exporter the names of
    each file's attributes), `rclone check` finds no difference and can check every
    MD5, and `rclone copy -M` back to a folder gives the original times and modes."""
    src, snap = rclone_filled(azplakar, azurite, rclone, store, tmp_path / "local", "-M", "-l")
    dst = f"rclone-dst-{os.urandom(5).hex()}"
    add_destination(azplakar, azurite, "dst", dst, *options)
    pk(azplakar, "at", store, "restore", "-to", "@dst", snap)

    assert rclone.lsl(rclone.remote(dst)) == rclone.lsl(rclone.remote(src.container_name))
    check = rclone.run("check", rclone.remote(src.container_name), rclone.remote(dst))
    assert "0 differences found" in check.stderr, check.stderr
    assert "hashes could not be checked" not in check.stderr, check.stderr
    for name, (stored, actual) in md5_of_every_blob(service(azurite)
                                                    .get_container_client(dst)).items():
        assert stored == actual, name
    meta_src = rclone.lsjson(rclone.remote(src.container_name), "-M")
    meta_dst = rclone.lsjson(rclone.remote(dst), "-M")
    for f in LOCAL:
        for key in ("mtime", "mode", "uid", "gid"):
            assert meta_dst[f.path]["Metadata"][key] == meta_src[f.path]["Metadata"][key], \
                (f.path, key)

    back = tmp_path / "back"
    rclone.run("copy", "-M", "-l", rclone.remote(dst), str(back))
    for f in LOCAL:
        st = (back / f.path).lstat()
        assert st.st_mtime_ns == f.mtime, f.path
        assert stat.S_IMODE(st.st_mode) == f.mode, f.path
    assert os.readlink(back / LINK[0]) == LINK[1]


def test_plain_blobs_restored_into_a_container_exactly_as_today(
    azplakar: PlakarEnv, azurite: Azurite, store: str,
) -> None:
    """Blobs with no convention: no metadata added by the default style, Content-MD5
    of the bytes on every blob; with metadata_style=rclone, their Last-Modified
    (their backed-up time) becomes `mtime`."""
    src = new_container(azurite, "plain-src")
    blobs = {"a.txt": b"alpha", "dir/b.bin": os.urandom(5 * MiB + 1), "empty": b""}
    for name, data in blobs.items():
        src.upload_blob(name, data)
    snap = backed_up(azplakar, azurite, store, src)

    dst = new_container(azurite, "plain-dst")
    add_destination(azplakar, azurite, "dst", dst.container_name)
    pk(azplakar, "at", store, "restore", "-to", "@dst", snap)
    assert {b.name: dict(b.metadata) for b in dst.list_blobs(include=["metadata"])} == \
        {name: {} for name in blobs}
    assert all(stored == actual for stored, actual in md5_of_every_blob(dst).values())

    dst2 = new_container(azurite, "plain-dst")
    add_destination(azplakar, azurite, "dst2", dst2.container_name, "metadata_style=rclone")
    pk(azplakar, "at", store, "restore", "-to", "@dst2", snap)
    originals = {b.name: b.last_modified for b in src.list_blobs()}
    for blob in dst2.list_blobs(include=["metadata"]):
        stamp = rfc3339_ns(blob.metadata["mtime"])
        assert stamp == int(originals[blob.name].timestamp()) * 1_000_000_000, blob.name


# -- azcopy's POSIX properties (written with the SDK as azcopy writes them) --

AZ_FILE = ("posix/a.sh", b"#!/bin/sh\necho hi\n", ns("2020-05-06 07:08:09.123456789"),
           0o100750, 1234, 5678)
AZ_LINK = ("posix/lnk", "a.sh", ns("2021-02-03 04:05:06.7"))
AZ_DIR = ("posix/folder", ns("2020-09-09 09:09:09"), 0o40700)
AMLFS_FILE = ("lustre/b.txt", b"lustre\n", ns("2021-02-03 04:05:06"), 0o640, 42, 43)


def fill_azcopy(container: ContainerClient) -> None:
    """Standard style (decimal st_mode, ns times, posix_owner/posix_group; a symlink
    also flagged is_char_dev, as azcopy's mode test flags it) and amlfs style
    (octal permissions, `2006-01-02 15:04:05 -0700` time, owner/group)."""
    name, data, mtime, mode, uid, gid = AZ_FILE
    container.upload_blob(name, data, metadata={
        "modtime": str(mtime), "permissions": str(mode), "posix_owner": str(uid),
        "posix_group": str(gid), "posix_nlink": "1", "posix_ino": "131",
        "posix_dev": "2049", "posix_atime": str(mtime), "posix_ctime": str(mtime)})
    name, target, mtime = AZ_LINK
    container.upload_blob(name, target.encode(), metadata={
        "modtime": str(mtime), "permissions": str(0o120777), "posix_owner": "55",
        "posix_group": "66", "is_symlink": "true", "is_char_dev": "true"})
    name, mtime, mode = AZ_DIR
    container.upload_blob(name, b"", metadata={
        "modtime": str(mtime), "permissions": str(mode), "posix_owner": "77",
        "posix_group": "88", "hdi_isfolder": "true"})
    # Newer than its folder: the folder keeps its own time, not the newest inside.
    container.upload_blob(f"{name}/inside.txt", b"inside", metadata={
        "modtime": str(ns("2020-10-10 10:10:10")), "permissions": str(0o100600)})
    name, data, mtime, mode, uid, gid = AMLFS_FILE
    when = datetime.fromtimestamp(mtime / 1e9, UTC)
    container.upload_blob(name, data, metadata={
        "modtime": when.strftime("%Y-%m-%d %H:%M:%S +0000"), "permissions": f"{mode:04o}",
        "owner": str(uid), "group": str(gid)})


def test_azcopy_posix_properties_restored_to_a_folder(
    azplakar: PlakarEnv, azurite: Azurite, store: str, tmp_path: Path,
) -> None:
    src = new_container(azurite, "azcopy-src")
    fill_azcopy(src)
    snap = backed_up(azplakar, azurite, store, src)
    out = restored_folder(azplakar, store, snap, tmp_path / "out")
    held = owners(azplakar, store, snap)
    root = os.geteuid() == 0  # plakar chowns directories and symlinks as root only

    for name, data, mtime, mode, uid, gid in (AZ_FILE, AMLFS_FILE):
        st = (out / name).lstat()
        assert (out / name).read_bytes() == data
        assert st.st_mtime_ns == as_plakar_restores(mtime), name
        assert stat.S_IMODE(st.st_mode) == mode & 0o7777, name
        assert held["/" + name] == (user_of(uid), group_of(gid)), name
    name, target, mtime = AZ_LINK
    assert os.readlink(out / name) == target
    assert (out / name).lstat().st_mtime_ns == as_plakar_restores(mtime)
    assert (out / name).lstat().st_uid == 55 or not root
    name, mtime, mode = AZ_DIR
    st = (out / name).lstat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_mtime_ns == as_plakar_restores(mtime)
    assert (st.st_uid, st.st_gid) == (77, 88) or not root
    assert stat.S_IMODE((out / name / "inside.txt").lstat().st_mode) == 0o600


@pytest.mark.parametrize("options", [("metadata_style=azcopy",), ()], ids=["option", "default"])
def test_azcopy_keys_written_back_into_a_container(
    azplakar: PlakarEnv, azurite: Azurite, store: str, options: tuple[str, ...],
) -> None:
    """The restored blobs carry azcopy's keys again, in the style each came with by
    default (standard with the option): what azcopy reads back is the original."""
    src = new_container(azurite, "azcopy-src")
    fill_azcopy(src)
    snap = backed_up(azplakar, azurite, store, src)
    dst = new_container(azurite, "azcopy-dst")
    add_destination(azplakar, azurite, "dst", dst.container_name, *options)
    pk(azplakar, "at", store, "restore", "-to", "@dst", snap)
    got = {b.name: dict(b.metadata) for b in dst.list_blobs(include=["metadata"])}

    name, _data, mtime, mode, uid, gid = AZ_FILE
    assert int(got[name]["modtime"]) == mtime
    assert int(got[name]["permissions"]) == mode
    assert (got[name]["posix_owner"], got[name]["posix_group"]) == (str(uid), str(gid))
    name, target, mtime = AZ_LINK
    assert got[name]["is_symlink"] == "true" and int(got[name]["modtime"]) == mtime
    assert dst.download_blob(name).readall() == target.encode()
    name, _data, mtime, mode, uid, gid = AMLFS_FILE
    if options:  # standard style asked for
        assert int(got[name]["modtime"]) == mtime
        assert int(got[name]["permissions"]) == 0o100000 | mode
        assert (got[name]["posix_owner"], got[name]["posix_group"]) == (str(uid), str(gid))
    else:  # the amlfs style it came with
        assert got[name]["modtime"] == "2021-02-03 04:05:06 +0000"
        assert got[name]["permissions"] == f"{mode:04o}"
        assert (got[name]["owner"], got[name]["group"]) == (str(uid), str(gid))
    assert all(stored == actual for stored, actual in md5_of_every_blob(dst).values())


# -- never miss a change --

@pytest.mark.parametrize("key,value", [("mtime", "2020-03-01T12:34:56.123456789Z"),
                                        ("modtime", "1583066096123456789")],
                         ids=["rclone", "azcopy"])
def test_overwrite_with_same_size_and_old_time_is_read_again(
    azplakar: PlakarEnv, azurite: Azurite, store: str, tmp_path: Path, key: str, value: str,
) -> None:
    """New bytes of the same size under the same time metadata (any SDK user, or
    rclone when the source's time did not change): the next backup has them."""
    src = new_container(azurite, "overwrite")
    src.upload_blob("f.bin", b"A" * 4096, metadata={key: value})
    src.upload_blob("other.txt", b"unchanged", metadata={key: value})
    first = backed_up(azplakar, azurite, store, src)
    src.upload_blob("f.bin", b"B" * 4096, metadata={key: value}, overwrite=True)
    second = snapshot_id(pk(azplakar, "at", store, "backup", "@src"))

    assert pk(azplakar, "at", store, "cat", f"{first}:/f.bin").stdout == "A" * 4096
    assert pk(azplakar, "at", store, "cat", f"{second}:/f.bin").stdout == "B" * 4096
    out = restored_folder(azplakar, store, second, tmp_path / "out")
    assert (out / "f.bin").read_bytes() == b"B" * 4096
    assert (out / "f.bin").stat().st_mtime_ns == 1583066096123457000


# -- malformed values --

def test_malformed_values_are_ignored_never_a_failed_backup(
    azplakar: PlakarEnv, azurite: Azurite, store: str, tmp_path: Path,
) -> None:
    src = new_container(azurite, "malformed")
    bad = {
        "bad-rclone-time": {"mtime": "yesterday"},
        "bad-azcopy-time": {"modtime": "12x"},
        "bad-mode": {"mtime": "2020-01-02T03:04:05Z", "mode": "9999"},
        "bad-permissions": {"modtime": "1583066096000000000", "permissions": "99999999999"},
        "negative-owner": {"modtime": "1583066096000000000", "posix_owner": "-1"},
        "huge-group": {"modtime": "1583066096000000000", "posix_group": str(1 << 40)},
    }
    for name, metadata in bad.items():
        src.upload_blob(name, name.encode(), metadata=metadata)
    add_source(azplakar, azurite, "src", src)
    backup = pk(azplakar, "at", store, "backup", "@src")
    snap = snapshot_id(backup)
    assert "backup completed without errors" in backup.stdout + backup.stderr
    out = restored_folder(azplakar, store, snap, tmp_path / "out")
    listed = {b.name: b.last_modified for b in src.list_blobs()}
    for name in bad:
        st = (out / name).lstat()
        assert (out / name).read_bytes() == name.encode()
        if name in ("bad-rclone-time", "bad-azcopy-time"):  # Last-Modified, as today
            assert st.st_mtime_ns == int(listed[name].timestamp()) * 1_000_000_000, name
        else:  # the valid time is kept, the bad value alone ignored
            assert st.st_mtime_ns in (1577934245 * 10**9, 1583066096 * 10**9), name
        assert stat.S_IMODE(st.st_mode) == 0o644, name
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (0, 0), name
