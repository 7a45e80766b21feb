"""Records: what an importer produces and an exporter receives."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, Protocol, TypeAlias, TypeVar

from . import filemode


class SupportsRead(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


# Content is a file-like object (read) or an iterable of byte chunks.
Readable: TypeAlias = SupportsRead | BinaryIO | Iterable[bytes]
# Called by the SDK when plakar opens a record, and not before.
Opener: TypeAlias = Callable[[], Readable]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_T = TypeVar("_T")
_MICROSECOND = timedelta(microseconds=1)


def from_ns(stamp_ns: int) -> tuple[datetime, int]:
    """A time in nanoseconds since the epoch as a :class:`FileInfo` holds it:
    ``(mod_time, mod_time_nanos)``."""
    micros, nanos = divmod(stamp_ns, 1000)
    return EPOCH + micros * _MICROSECOND, nanos


class XattrType(enum.IntEnum):
    """Extended attribute kind, as plakar puts it on the wire.

    plakar casts its own values onto the protocol's enum, so 0 is an ordinary
    extended attribute and 1 an alternate data stream (see protocol page §4).
    """

    EXTENDED = 0
    ADS = 1


def open_key(pathname: str, is_xattr: bool, xattr_name: str, xattr_type: int) -> str:
    """The key plakar opens a record's content by: its path, or for an extended
    attribute ``xattr:PATH:NAME`` (``@`` instead of ``:`` for an ADS)."""
    if is_xattr:
        sep = "@" if xattr_type == XattrType.ADS else ":"
        return f"xattr:{pathname}{sep}{xattr_name}"
    return pathname


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int = 0
    mode: int = 0o644  # a Go fs.FileMode (see filemode)
    mod_time: datetime = EPOCH
    dev: int = 0
    ino: int = 0
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    username: str = ""
    groupname: str = ""
    flags: int = 0
    # plakar keeps times to the nanosecond, a datetime to the microsecond: the
    # nanoseconds past mod_time's microsecond, 0-999 (see from_ns).
    mod_time_nanos: int = 0

    @property
    def mod_time_ns(self) -> int:
        """The modification time in nanoseconds since the epoch."""
        when = self.mod_time
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return (when - EPOCH) // _MICROSECOND * 1000 + self.mod_time_nanos

    @property
    def is_dir(self) -> bool:
        return filemode.is_dir(self.mode)

    @property
    def is_regular(self) -> bool:
        return filemode.is_regular(self.mode)

    @property
    def is_symlink(self) -> bool:
        return filemode.is_symlink(self.mode)


@dataclass(frozen=True)
class Record:
    """One entry of a snapshot: a file, a directory, a symlink, an xattr or an error.

    ``opener`` is set by importers for content that plakar may read; it is
    called only when plakar opens the record. ``has_reader`` tells an
    exporter whether content follows the record.
    """

    pathname: str
    file_info: FileInfo | None = None
    error: str = ""
    is_xattr: bool = False
    xattr_name: str = ""
    xattr_type: XattrType = XattrType.EXTENDED
    target: str = ""
    extended_attributes: tuple[str, ...] = ()
    file_attributes: int = 0
    opener: Opener | None = field(default=None, compare=False, repr=False)
    has_reader: bool = False

    @property
    def key(self) -> str:
        """The key plakar uses to open this record's content."""
        return open_key(self.pathname, self.is_xattr, self.xattr_name, self.xattr_type)

    @classmethod
    def file(
        cls,
        pathname: str,
        *,
        size: int,
        mod_time: datetime,
        opener: Opener | None,
        mode: int = 0o644,
        xattrs: Iterable[str] = (),
        **info: int | str,
    ) -> Record:
        """A regular file; ``opener`` gives its content when plakar asks for it."""
        if info:
            fi = FileInfo(_basename(pathname), size, filemode.perm(mode), mod_time, **info)  # type: ignore[arg-type]
        else:  # the usual case, once per listed file: see _built
            fi = _built(FileInfo, {"name": _basename(pathname), "size": size,
                                   "mode": filemode.perm(mode), "mod_time": mod_time})
        return _built(cls, {"pathname": pathname, "file_info": fi,
                            "extended_attributes": tuple(xattrs), "opener": opener,
                            "has_reader": opener is not None})

    @classmethod
    def directory(
        cls, pathname: str, *, mod_time: datetime = EPOCH, mode: int = 0o755,
        xattrs: Iterable[str] = (), **info: int | str,
    ) -> Record:
        fi = FileInfo(_basename(pathname), 0, filemode.DIR | filemode.perm(mode), mod_time, **info)  # type: ignore[arg-type]
        return cls(pathname, fi, extended_attributes=tuple(xattrs))

    @classmethod
    def symlink(
        cls, pathname: str, target: str, *, mod_time: datetime = EPOCH, mode: int = 0o777,
        xattrs: Iterable[str] = (), **info: int | str,
    ) -> Record:
        fi = FileInfo(_basename(pathname), len(target), filemode.SYMLINK | filemode.perm(mode),
                      mod_time, **info)  # type: ignore[arg-type]
        return cls(pathname, fi, target=target, extended_attributes=tuple(xattrs))

    @classmethod
    def xattr(
        cls, pathname: str, name: str, opener: Opener, *,
        xattr_type: XattrType = XattrType.EXTENDED,
    ) -> Record:
        """An extended attribute ``name`` of ``pathname``; its value is the content."""
        return cls(pathname, is_xattr=True, xattr_name=name, xattr_type=xattr_type,
                   opener=opener, has_reader=True)

    @classmethod
    def failure(cls, pathname: str, error: str) -> Record:
        """A path that could not be read: plakar logs it and goes on."""
        return cls(pathname, error=error)

    def with_error(self, error: str) -> Record:
        return replace(self, error=error)


@dataclass(frozen=True)
class Result:
    """plakar's (or an exporter's) answer about one record."""

    record: Record
    error: str = ""


def each_record(items: Iterable[Record | Iterable[Record]]) -> Iterator[Record]:
    """The records an importer's ``scan`` yields, its batches taken apart (see
    :meth:`kloset_sdk.Importer.scan`): for tests and tools that read a scan."""
    for item in items:
        if isinstance(item, Record):
            yield item
        else:
            yield from item


def _built(cls: type[_T], fields: dict[str, object]) -> _T:
    """An instance of the frozen dataclass ``cls`` (FileInfo or Record) holding
    ``fields``, its other fields at their defaults.

    The generated ``__init__`` sets every field, each through
    ``object.__setattr__`` (frozen): about 1.8 us for a FileInfo and as much for
    a Record, twice per listed file, a tenth of an importer's CPU per record
    over a long listing. Fields left out are read from the class, where
    dataclasses keep their defaults (neither class has a default_factory nor a
    ``__post_init__``), so equality, repr, hashing, ``replace`` and pickling see
    the same instance as ``cls(**fields)`` builds."""
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", fields)
    return obj


def _basename(pathname: str) -> str:
    stripped = pathname.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else "/"
