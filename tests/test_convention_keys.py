"""rclone's and azcopy's metadata keys, read and written (pure logic, no Azure).

The values are those the tools write (docs/metadata-conventions.md): rclone
v1.76.0 wrote the rclone ones here into Azurite; azcopy's come from its
source (common/unixStatAdapter.go).
"""

from __future__ import annotations

import logging

import pytest

from plakar_azblob.mapping.conventions import (
    AMLFS,
    AZCOPY,
    DIR,
    FILE,
    NONE,
    RCLONE,
    SYMLINK,
    Posix,
    read,
    rfc3339,
    rfc3339_ns,
    style_of,
    written,
)

T = 1583066096123456789  # 2020-03-01 12:34:56.123456789 UTC


def test_blobs_without_a_convention() -> None:
    assert read({}, "a") is None
    # Other tools' or users' keys, even those a convention uses when anchored.
    assert read({"owner": "alice", "purpose": "x", "mode": "fast", "uid": "7"}, "a") is None
    assert read({"hdi_isfolder": "true"}, "a") is None


@pytest.mark.parametrize("text", [
    "2020-03-01T12:34:56.123456789Z",  # rclone's own format
    "2020-03-01T13:34:56.123456789+01:00",  # in the local zone, as rclone writes it
    "2020-03-01T07:34:56.123456789-05:00",
    "2020-03-01t12:34:56.123456789z",
])
def test_rclone_mtime(text: str) -> None:
    assert read({"mtime": text}, "a") == Posix(RCLONE, mtime_ns=T)


@pytest.mark.parametrize(("text", "stamp"), [
    ("2020-03-01T12:34:56Z", 1583066096 * 10**9),
    ("2020-03-01T12:34:56.5Z", 1583066096_500_000_000),
    ("1969-12-31T23:59:59.999999999Z", -1),
    ("0001-01-01T00:00:00Z", -62135596800 * 10**9),
])
def test_rfc3339_precision_and_range(text: str, stamp: int) -> None:
    assert rfc3339_ns(text) == stamp


def test_rclone_metadata_flag_keys() -> None:
    posix = read({"mtime": "2020-03-01T12:34:56.123456789Z", "mode": "100755", "uid": "1234",
                  "gid": "5678", "atime": "2026-12-04T17:58:41.64290787Z",
                  "btime": "2026-12-04T17:58:41.418907865Z"}, "a")
    assert posix == Posix(RCLONE, mtime_ns=T, perm=0o755, uid=1234, gid=5678, kind=FILE)
    # setuid, setgid and sticky are never taken from metadata.
    assert read({"mtime": "2020-03-01T12:34:56Z", "mode": "104755"}, "a").perm == 0o755  # type: ignore[union-attr]


def test_rclone_link_blob_stays_a_file() -> None:
    """A .rclonelink blob (mode 120777) is a file for rclone without -l: read() says
    what its mode says, the importer keeps it a file (see source.py)."""
    posix = read({"mtime": "2021-01-01T00:00:00.5Z", "mode": "120777"}, "link.rclonelink")
    assert posix is not None and posix.kind == SYMLINK and posix.style == RCLONE


def test_azcopy_standard_style() -> None:
    posix = read({"modtime": str(T), "permissions": str(0o100750), "posix_owner": "1234",
                  "posix_group": "5678", "posix_nlink": "1", "posix_ino": "131",
                  "posix_atime": str(T), "posix_ctime": str(T), "linux_statx_mask": "4095"},
                 "a")
    assert posix == Posix(AZCOPY, mtime_ns=T, perm=0o750, uid=1234, gid=5678, kind=FILE)


def test_azcopy_amlfs_style() -> None:
    posix = read({"modtime": "2021-02-03 04:05:06 +0100", "permissions": "0640", "owner": "42",
                  "group": "43"}, "a")
    assert posix == Posix(AMLFS, mtime_ns=1612321506 * 10**9, perm=0o640, uid=42, gid=43)
    # azcopy reads a permissions with a leading 0 as octal even without owner/group.
    assert read({"permissions": "0755"}, "a") == Posix(AZCOPY, perm=0o755)
    assert read({"permissions": "493"}, "a") == Posix(AZCOPY, perm=0o755)


def test_azcopy_kinds() -> None:
    # A symlink, flagged is_char_dev too as azcopy's bitwise mode test does.
    link = read({"modtime": str(T), "permissions": str(0o120777), "is_symlink": "true",
                 "is_char_dev": "true"}, "a")
    assert link is not None and link.kind == SYMLINK
    folder = read({"modtime": str(T), "permissions": str(0o40700), "hdi_isfolder": "true"}, "a")
    assert folder is not None and folder.kind == DIR and folder.perm == 0o700
    # amlfs modes have no type bits: the flags say it.
    assert read({"modtime": str(T), "permissions": "0777", "owner": "0",
                 "is_symlink": "true"}, "a").kind == SYMLINK  # type: ignore[union-attr]
    # A socket azcopy also flagged hdi_isfolder: its mode has the last word.
    assert read({"modtime": str(T), "permissions": str(0o140755),
                 "hdi_isfolder": "true"}, "a").kind == FILE  # type: ignore[union-attr]


def test_keys_in_any_case() -> None:
    assert read({"MTime": "2020-03-01T12:34:56.123456789Z"}, "a") == Posix(RCLONE, mtime_ns=T)
    assert read({"ModTime": str(T), "Posix_Owner": "5"}, "a") == Posix(AZCOPY, mtime_ns=T, uid=5)


S = 1583066096 * 10**9  # 2020-03-01T12:34:56Z


@pytest.mark.parametrize(("metadata", "left", "bad"), [
    ({"mtime": "yesterday"}, Posix(RCLONE), 1),
    ({"mtime": "2020-02-30T00:00:00Z"}, Posix(RCLONE), 1),
    ({"mtime": "2020-03-01T12:34:60Z"}, Posix(RCLONE), 1),
    ({"mtime": "2020-03-01T12:34:56.1234567891Z"}, Posix(RCLONE), 1),
    ({"mtime": "2020-03-01 12:34:56Z"}, Posix(RCLONE), 1),
    ({"mtime": "2020-03-01T12:34:56+24:00"}, Posix(RCLONE), 1),
    ({"mtime": "2020-03-01T12:34:56Z", "mode": "9999"}, Posix(RCLONE, mtime_ns=S), 1),
    ({"mtime": "2020-03-01T12:34:56Z", "mode": "-644"}, Posix(RCLONE, mtime_ns=S), 1),
    ({"mtime": "2020-03-01T12:34:56Z", "uid": "-1", "gid": " 5"}, Posix(RCLONE, mtime_ns=S), 2),
    ({"modtime": "12x"}, Posix(AZCOPY), 1),
    ({"modtime": str(1 << 63)}, Posix(AZCOPY), 1),
    ({"modtime": "1_000"}, Posix(AZCOPY), 1),
    ({"modtime": "١٢٣"}, Posix(AZCOPY), 1),  # digits, but not ASCII ones
    ({"permissions": "99999999999"}, Posix(AZCOPY), 1),
    ({"permissions": "0789"}, Posix(AZCOPY), 1),
    ({"modtime": "1", "posix_owner": "-1", "posix_group": str(1 << 40)},
     Posix(AZCOPY, mtime_ns=1), 2),
    ({"modtime": "2021-02-03 04:05:06 +01", "owner": "x"}, Posix(AMLFS), 2),
])
def test_malformed_values_are_ignored_with_one_debug_line_each(
    metadata: dict[str, str], left: Posix, bad: int, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="plakar_azblob.mapping.conventions"):
        assert read(metadata, "blob") == left
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == bad, lines
    assert all(line.startswith("azblob: blob 'blob': metadata ") and line.endswith(": ignored")
               for line in lines), lines


def test_rfc3339_written_as_rclone_writes_it() -> None:
    assert rfc3339(T) == "2020-03-01T12:34:56.123456789Z"
    assert rfc3339(1583066096 * 10**9) == "2020-03-01T12:34:56.000000000Z"
    assert rfc3339(-1) == "1969-12-31T23:59:59.999999999Z"
    for stamp in (T, 0, -1, 253402300799_999999999):
        assert rfc3339_ns(rfc3339(stamp)) == stamp


def test_written_keys() -> None:
    assert written(RCLONE, FILE, T, 0o755, 1, 2) == {
        "mtime": "2020-03-01T12:34:56.123456789Z", "mode": "100755", "uid": "1", "gid": "2"}
    assert written(RCLONE, FILE, T, 0o644, 0, 0, frozenset({"mtime"})) == {
        "mtime": "2020-03-01T12:34:56.123456789Z"}
    assert written(AZCOPY, FILE, T, 0o750, 1234, 5678) == {
        "modtime": str(T), "permissions": str(0o100750), "posix_owner": "1234",
        "posix_group": "5678"}
    assert written(AZCOPY, SYMLINK, T, 0o777, 0, 0) == {
        "modtime": str(T), "permissions": str(0o120777), "posix_owner": "0",
        "posix_group": "0", "is_symlink": "true"}
    assert written(AMLFS, FILE, 1612321506 * 10**9, 0o640, 42, 43) == {
        "modtime": "2021-02-03 03:05:06 +0000", "permissions": "0640", "owner": "42",
        "group": "43"}
    assert written(NONE, FILE, T, 0o644, 0, 0) == {}
    # What is written reads back as it was.
    for style in (RCLONE, AZCOPY, AMLFS):
        back = read(written(style, FILE, T, 0o640, 7, 8), "a")
        assert back is not None and (back.perm, back.uid, back.gid) == (0o640, 7, 8)
        assert back.mtime_ns == (T if style != AMLFS else T // 10**9 * 10**9)


def test_style_of_attribute_names() -> None:
    assert style_of([]) == (NONE, frozenset())
    assert style_of(["azure.content-type", "azure.meta.owner"]) == (NONE, frozenset())
    assert style_of(["azure.meta.mtime"]) == (RCLONE, frozenset({"mtime"}))
    assert style_of(["azure.meta.mtime", "azure.meta.mode", "azure.meta.uid", "azure.meta.gid",
                     "azure.meta.atime"]) == (RCLONE, frozenset({"mtime", "mode", "uid", "gid"}))
    assert style_of(["azure.meta.modtime", "azure.meta.permissions", "azure.meta.posix_owner",
                     "azure.meta.posix_group", "azure.meta.posix_ino"]) == \
        (AZCOPY, frozenset({"modtime", "permissions", "posix_owner", "posix_group"}))
    assert style_of(["azure.meta.ModTime", "azure.meta.owner"]) == \
        (AMLFS, frozenset({"modtime", "owner"}))
