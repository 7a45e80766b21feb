"""The directory tree of a listing (pure logic, no Azure)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from kloset_sdk import EPOCH, Record
from plakar_azblob.mapping.paths import invalid_name
from plakar_azblob.mapping.tree import Own, Tree

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(entries: list[tuple[str, str, int]], prefix: str = "") -> list[Record]:
    """Feed (name, kind, minute) entries in name order; kind: file | folder | marker."""
    tree = Tree(prefix)
    out: list[Record] = []
    for name, kind, minute in sorted(entries):
        mtime = T0 + timedelta(minutes=minute)
        if kind == "file":
            out += tree.file(name, mtime, [Record.file("/" + name, size=minute, mod_time=mtime,
                                                       opener=None)])
        elif kind == "folder":
            out += tree.folder(name, mtime)
        else:
            out += tree.marker(name, mtime)
    out += tree.finish()
    return out


def dirs(records: list[Record]) -> dict[str, datetime]:
    found = [(r.pathname, r.file_info.mod_time) for r in records
             if r.file_info is not None and r.file_info.is_dir]
    counts = Counter(path for path, _ in found)
    assert all(n == 1 for n in counts.values()), f"directories seen twice: {counts}"
    return dict(found)


def files(records: list[Record]) -> list[str]:
    return sorted(r.pathname for r in records
                  if r.file_info is not None and r.file_info.is_regular)


def failures(records: list[Record]) -> list[str]:
    return sorted(r.pathname for r in records if r.error)


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def test_implied_directories_once_each_dated_by_newest_inside() -> None:
    out = run([("a/b/c.txt", "file", 3), ("a/d.txt", "file", 5), ("a/b/e.txt", "file", 1),
               ("f.txt", "file", 2)])
    assert files(out) == ["/a/b/c.txt", "/a/b/e.txt", "/a/d.txt", "/f.txt"]
    assert dirs(out) == {"/": at(5), "/a": at(5), "/a/b": at(3)}


def test_empty_listing_still_has_its_root() -> None:
    assert dirs(run([])) == {"/": EPOCH}
    assert dirs(run([], prefix="a/b")) == {"/": EPOCH, "/a": EPOCH, "/a/b": EPOCH}


def test_prefix_root_and_its_own_marker() -> None:
    out = run([("a/b/", "marker", 9), ("a/b/c", "file", 4)], prefix="a/b")
    assert files(out) == ["/a/b/c"]
    assert dirs(out) == {"/": at(9), "/a": at(9), "/a/b": at(9)}


def test_trailing_slash_markers() -> None:
    out = run([("d/", "marker", 1), ("d/f", "file", 2), ("e/", "marker", 7)])
    assert files(out) == ["/d/f"]
    assert dirs(out) == {"/": at(7), "/d": at(2), "/e": at(7)}


def test_folder_marker_sorted_before_siblings_that_precede_its_children() -> None:
    # "x" < "x-1" < "x.txt" < "x/a": the marker must not open /x twice.
    out = run([("x", "folder", 8), ("x-1", "file", 1), ("x.txt", "file", 2),
               ("x/a", "file", 3)])
    assert files(out) == ["/x-1", "/x.txt", "/x/a"]
    assert dirs(out) == {"/": at(8), "/x": at(8)}


def test_empty_folder_marker() -> None:
    out = run([("m/x", "folder", 4), ("m/y", "file", 2)])
    assert dirs(out) == {"/": at(4), "/m": at(4), "/m/x": at(4)}
    assert files(out) == ["/m/y"]


def test_both_kinds_of_marker_for_one_folder() -> None:
    out = run([("x", "folder", 1), ("x/", "marker", 2), ("x/y", "file", 3)])
    assert dirs(out) == {"/": at(3), "/x": at(3)}


def infos(records: list[Record]) -> dict[str, tuple[datetime, int, int, int, int]]:
    """Directory path -> (time, nanoseconds, permissions, uid, gid)."""
    return {r.pathname: (r.file_info.mod_time, r.file_info.mod_time_nanos,
                         r.file_info.mode & 0o777, r.file_info.uid, r.file_info.gid)
            for r in records if r.file_info is not None and r.file_info.is_dir}


def test_a_folder_s_own_attributes_are_kept() -> None:
    """azcopy's folder blobs: their own time (not the newest inside), mode, owner."""
    own = Own(mtime=at(1), nanos=7, mode=0o700, uid=77, gid=88)
    tree = Tree("")
    out = list(tree.folder("d", at(50), own))
    out += tree.file("d/f", at(9), [Record.file("/d/f", size=1, mod_time=at(9), opener=None)])
    out += tree.folder("e", at(50), Own(mtime=at(2), mode=0o750))  # empty
    out += tree.marker("m/", at(50), Own(mode=0o711))  # no time of its own
    out += tree.file("m/g", at(3), [Record.file("/m/g", size=1, mod_time=at(3), opener=None)])
    out += tree.finish()
    found = infos(out)
    assert found["/d"] == (at(1), 7, 0o700, 77, 88)
    assert found["/e"] == (at(2), 0, 0o750, 0, 0)
    assert found["/m"] == (at(50), 0, 0o711, 0, 0)  # the marker's Last-Modified, newest
    assert found["/"] == (at(50), 0, 0o755, 0, 0)  # the newest of its own entries


def test_chain_of_held_back_names() -> None:
    out = run([("x", "folder", 1), ("x-1", "folder", 2), ("x-1-2", "file", 3),
               ("x-1/a", "file", 4), ("x/b", "file", 5), ("z", "file", 6)])
    assert files(out) == ["/x-1-2", "/x-1/a", "/x/b", "/z"]
    assert dirs(out) == {"/": at(6), "/x": at(5), "/x-1": at(4)}


def test_file_that_is_also_a_folder_is_a_failure() -> None:
    out = run([("x", "file", 1), ("x.txt", "file", 2), ("x/y", "file", 3)])
    assert failures(out) == ["/x"]
    assert files(out) == ["/x.txt", "/x/y"]
    assert dirs(out) == {"/": at(3), "/x": at(3)}
    failure = next(r for r in out if r.error)
    assert "cannot be both a file and a directory" in failure.error


def test_file_records_are_held_until_known_not_to_be_folders() -> None:
    tree = Tree("")
    file = Record.file("/x", size=1, mod_time=T0, opener=None)
    assert list(tree.file("x", T0, [file])) == []
    assert file in list(tree.file("y", T0, [Record.file("/y", size=1, mod_time=T0,
                                                         opener=None)]))


@pytest.mark.parametrize("name", ["a//b", "/a", "a/./b", "a/../b", "..", "a/.", "x//"])
def test_invalid_names(name: str) -> None:
    assert invalid_name(name) is not None


@pytest.mark.parametrize("name", ["", "a", "a/b", "a/", "a b/c#?%+&", "...", ".a/b."])
def test_valid_names(name: str) -> None:
    assert invalid_name(name) is None
