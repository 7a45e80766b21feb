"""The record fields a blob's convention gives (see :mod:`.conventions`).

Only for blobs that carry one: a plain blob's record is made as it always
was (Last-Modified, 0644, owner 0), so that an upgrade does not make plakar
read every plain blob again once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from kloset_sdk import from_ns

from . import conventions
from .tree import Own


def file_fields(posix: conventions.Posix, last_modified: datetime, etag: str,
                ) -> tuple[datetime, dict[str, int]]:
    """A file's time, and the other fields (Record.file's keywords) ``posix`` gives."""
    mtime = last_modified
    info: dict[str, int] = {}
    if posix.mtime_ns is not None:
        mtime, info["mod_time_nanos"] = from_ns(posix.mtime_ns)
        # plakar (kloset's FileInfo.Equal) skips reading a file whose name, size,
        # mode, time, dev, ino, owner... did not change: a blob rewritten under its
        # old time metadata must differ, and its ETag changes on every write.
        info["ino"] = etag_ino(etag)
    if posix.perm is not None:
        info["mode"] = posix.perm
    if posix.uid is not None:
        info["uid"] = posix.uid
    if posix.gid is not None:
        info["gid"] = posix.gid
    return mtime, info


def folder_own(posix: conventions.Posix | None) -> Own | None:
    """A folder marker's own attributes, from its convention. Not rclone's: its
    markers hold the time they were made (rclone does not keep a directory's)."""
    if posix is None or posix.style == conventions.RCLONE:
        return None
    mtime, nanos = from_ns(posix.mtime_ns) if posix.mtime_ns is not None else (None, 0)
    return Own(mtime=mtime, nanos=nanos, mode=0o755 if posix.perm is None else posix.perm,
               uid=posix.uid or 0, gid=posix.gid or 0)


def etag_ino(etag: str) -> int:
    """A 63-bit number that changes with ``etag`` (the record's ``ino``)."""
    digest = hashlib.blake2b(etag.strip('"').encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
