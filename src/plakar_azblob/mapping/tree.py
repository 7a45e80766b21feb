"""The directories of a blob listing, found in one pass with bounded memory.

Blob storage has no directories: they are implied by the ``/`` in blob
names, and sometimes made explicit by a folder marker (an empty blob named
``x/``, or on accounts with a hierarchical namespace an empty blob ``x``
with metadata ``hdi_isfolder=true``). plakar wants one directory record
per directory, exactly once.

Blobs are listed sorted by name, so everything inside ``x/`` comes as one
run. The tree keeps only the stack of directories holding the current blob
and closes each one when the listing leaves it: its record then goes out,
with the newest modification time found inside it (a folder marker's own
time counts). Memory is the depth of the path, not the size of the listing.

One catch: ``x``, ``x-1``, ``x.txt``... sort *before* ``x/`` (``-`` and
``.`` come before ``/``), so a blob ``x`` (or a folder marker ``x``) is
held back until the listing has passed the names that start with ``x``
followed by such a character. Then it is known whether ``x/...`` blobs
exist: a marker ``x`` becomes the directory ``x``, a plain blob ``x`` is
reported as a failure since a path cannot be both a file and a directory.
Held-back names are each a prefix of the next, so there are never more of
them than characters in a name.

A folder marker may carry the directory's own attributes (:class:`Own`, from
a convention in its metadata, see :mod:`plakar_azblob.mapping.conventions`): its
mode and owner, and its time, which is then kept rather than the newest
inside.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from kloset_sdk import EPOCH, Record


@dataclass(frozen=True)
class Own:
    """A directory's own attributes, from its folder marker's metadata."""

    mtime: datetime | None = None  # kept as the directory's time (None: newest inside)
    nanos: int = 0  # past mtime's microsecond
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass
class _Dir:
    prefix: str  # what the names inside it start with: "" or "some/dir/"
    mtime: datetime | None
    own: Own | None = None


@dataclass
class _Held:
    name: str
    mtime: datetime | None
    records: list[Record] | None  # a file's records, or None for a folder marker
    own: Own | None = None


class Tree:
    """Feed it the listing's blobs in order; it returns the records to send."""

    def __init__(self, prefix: str) -> None:
        """``prefix``: the listed prefix ("" or "a/b"); its directory is the root."""
        self._root = prefix + "/" if prefix else ""
        self._dirs = [_Dir(self._root, None)]
        self._held: list[_Held] = []
        self._marker: _Held | None = None  # a folder marker whose directory opens next

    # Each call returns the records that can go out now, in order: lists rather than
    # generators, one of which per step of each blob cost a tenth of an importer's CPU.

    def file(
        self, name: str, mtime: datetime | None, records: Iterable[Record],
    ) -> list[Record]:
        """A blob that is a file; ``records`` go out once it is known not to be a directory."""
        out: list[Record] = []
        self._reach(name, out)
        self._held.append(_Held(name, mtime, list(records)))
        return out

    def folder(self, name: str, mtime: datetime | None, own: Own | None = None,
               ) -> list[Record]:
        """A folder marker without a trailing ``/`` (hierarchical namespace, azcopy)."""
        out: list[Record] = []
        self._reach(name, out)
        self._held.append(_Held(name, mtime, None, own))
        return out

    def marker(self, name: str, mtime: datetime | None, own: Own | None = None,
               ) -> list[Record]:
        """A folder marker ``x/`` (or the root's own marker ``prefix/``)."""
        out: list[Record] = []
        self._reach(name, out)
        self._own(self._dirs[-1], own)
        self._touch(mtime)
        return out

    def finish(self) -> list[Record]:
        """The records still pending once the listing is over."""
        out: list[Record] = []
        self._settle(None, out)
        mtime = None
        while self._dirs:
            mtime = self._dirs[-1].mtime
            self._close(out)
        # The directories above the root, so that plakar has the whole path.
        if self._root:
            parts = self._root.split("/")[:-2]
            for depth in range(len(parts) + 1):
                out.append(Record.directory(_path("/".join(parts[:depth])),
                                            mod_time=mtime or EPOCH))
        return out

    # -- moving through the listing --

    def _reach(self, name: str, out: list[Record]) -> None:
        """Close what ``name`` is not in and open the directories holding it."""
        if self._held:
            self._settle(name, out)
        self._leave(name, out)
        top = self._dirs[-1].prefix
        if name.find("/", len(top)) < 0:
            return  # in the current directory: the usual case
        for part in name[len(top):].split("/")[:-1]:
            prefix = self._dirs[-1].prefix + part + "/"
            opened = _Dir(prefix, None)
            if self._marker is not None and self._marker.name + "/" == prefix:
                opened.mtime = self._marker.mtime
                self._own(opened, self._marker.own)
                self._marker = None
            self._dirs.append(opened)

    def _settle(self, name: str | None, out: list[Record]) -> None:
        """Send the held-back names that ``name`` (None: the end) comes after."""
        while self._held:
            held = self._held[-1]
            after = name is not None and name.startswith(held.name) and len(name) > len(held.name)
            if after and name is not None and name[len(held.name)] < "/":
                return  # still between "x" and "x/"
            self._held.pop()
            self._leave(held.name, out)
            is_dir = after and name is not None and name[len(held.name)] == "/"
            if held.records is None:
                if is_dir:
                    self._marker = held
                else:
                    alone = _Dir(held.name + "/", held.mtime)
                    self._own(alone, held.own)
                    self._touch(alone.mtime)
                    out.append(_record(alone))
            elif is_dir:
                out.append(Record.failure(_path(held.name), (
                    f"blob {held.name!r} is not backed up: other blobs are named "
                    f"{held.name + '/...'!r}, and a path cannot be both a file and a directory")))
            else:
                self._touch(held.mtime)
                out.extend(held.records)

    def _leave(self, name: str, out: list[Record]) -> None:
        """Close the open directories that do not hold ``name``."""
        while len(self._dirs) > 1 and not name.startswith(self._dirs[-1].prefix):
            self._close(out)

    def _close(self, out: list[Record]) -> None:
        done = self._dirs.pop()
        if self._dirs:
            self._touch(done.mtime)
        out.append(_record(done))

    def _touch(self, mtime: datetime | None) -> None:
        top = self._dirs[-1]
        if top.own is not None and top.own.mtime is not None:
            return  # its own time, not the newest inside
        if mtime is not None and (top.mtime is None or mtime > top.mtime):
            top.mtime = mtime

    @staticmethod
    def _own(opened: _Dir, own: Own | None) -> None:
        if own is not None:
            opened.own = own
            if own.mtime is not None:
                opened.mtime = own.mtime


def _record(done: _Dir) -> Record:
    path = _path(done.prefix.rstrip("/"))
    own = done.own
    if own is None:
        return Record.directory(path, mod_time=done.mtime or EPOCH)
    nanos = own.nanos if own.mtime is not None else 0
    return Record.directory(path, mod_time=done.mtime or EPOCH, mode=own.mode, uid=own.uid,
                            gid=own.gid, mod_time_nanos=nanos)


def _path(name: str) -> str:
    return "/" + name
