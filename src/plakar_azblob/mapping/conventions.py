"""File attributes other tools keep in a blob's metadata: rclone's and azcopy's.

A blob's Last-Modified is the time it was uploaded. Tools that copy files
into containers keep the file's own time (and often its mode, owner and
kind) in user metadata instead, each under its own keys:

- rclone (its ``azureblob`` backend): ``mtime``, RFC 3339 to the nanosecond,
  on every blob it writes; with ``--metadata`` also ``mode`` (octal, file
  type bits included), ``uid`` and ``gid`` (decimal); with ``--links`` a
  symlink is the blob ``NAME.rclonelink`` holding the target.
- azcopy (``--preserve-posix-properties``), standard style: ``modtime``
  (Unix nanoseconds), ``permissions`` (the whole ``st_mode``, *decimal*),
  ``posix_owner`` and ``posix_group``; amlfs style (Azure Managed Lustre):
  ``modtime`` as ``2006-01-02 15:04:05 -0700``, ``permissions`` octal
  (``0644``), ``owner`` and ``group``. A symlink is a blob holding the
  target with ``is_symlink=true``; a folder an empty blob with
  ``hdi_isfolder=true``.

:func:`read` gives what a blob's metadata says (a :class:`Posix`, or None
for the blobs that carry neither convention: most of them, and cheaply);
:func:`written` the metadata a style writes for a restored file. A value
that does not parse is ignored with one debug line: the blob is then
backed up with its Last-Modified, mode 0644, owner 0, as any plain blob.
Keys are matched whatever their case (Azure's metadata names are
case-insensitive). Mode bits beyond the permissions (setuid, setgid,
sticky) are never taken from metadata: anyone who can write to the
container could plant them (rclone drops them too unless asked).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

log = logging.getLogger(__name__)

RCLONE = "rclone"
AZCOPY = "azcopy"  # azcopy's standard style
AMLFS = "amlfs"  # azcopy's amlfs style (--posix-properties-style=amlfs)
NONE = "none"

RCLONE_LINK_SUFFIX = ".rclonelink"

# POSIX st_mode file types (the high bits of rclone's mode and azcopy's permissions).
S_IFMT = 0o170000
S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFLNK = 0o120000
PERM = 0o777

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"

_UINT32 = (1 << 32) - 1
_INT64 = (1 << 63) - 1
_NS = 1_000_000_000

# RFC 3339 as Go's time.RFC3339 layout parses it (rclone reads `mtime` so):
# fractional seconds optional, any number of digits up to nine.
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                      r"(?:([Zz])|([+-])(\d\d):(\d\d))")
# azcopy's amlfs layout, 2006-01-02 15:04:05 -0700 (fractional seconds accepted, as Go does).
_AMLFS_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? "
                         r"([+-])(\d\d)(\d\d)")


# The keys that say a blob follows a convention (the others are read only then).
_ANCHORS = frozenset({"mtime", "modtime", "permissions"})


@dataclass(frozen=True)
class Posix:
    """What a blob's metadata says of the file it holds; None: not said."""

    style: str
    mtime_ns: int | None = None  # nanoseconds since the epoch
    perm: int | None = None  # permission bits (0o777 at most)
    uid: int | None = None
    gid: int | None = None
    kind: str = FILE


def read(metadata: Mapping[str, str], name: str) -> Posix | None:
    """The attributes ``metadata`` (of blob ``name``) gives, or None if it follows
    neither convention. rclone's keys are read when ``mtime`` is there, azcopy's
    when ``modtime`` or ``permissions`` is; a blob with both is taken as rclone's,
    azcopy's keys filling what rclone's do not give."""
    if not metadata or _ANCHORS.isdisjoint(map(str.lower, metadata)):
        return None
    meta = {key.lower(): value for key, value in metadata.items()}
    rclone = "mtime" in meta
    azcopy = "modtime" in meta or "permissions" in meta
    found: dict[str, object] = {}
    style = NONE
    if azcopy:
        style = _azcopy(meta, name, found)
    if rclone:
        style = RCLONE
        _rclone(meta, name, found)
    return Posix(style=style, **found)  # type: ignore[arg-type]


def _rclone(meta: dict[str, str], name: str, found: dict[str, object]) -> None:
    _put(found, "mtime_ns", rfc3339_ns(meta["mtime"]), name, "mtime", meta["mtime"],
         "an RFC 3339 time")
    if "mode" in meta:
        _put_mode(found, name, "mode", meta["mode"], 8)
    for key in ("uid", "gid"):
        if key in meta:
            _put(found, key, _number(meta[key], 10, _UINT32), name, key, meta[key],
                 "a numeric id")


def _azcopy(meta: dict[str, str], name: str, found: dict[str, object]) -> str:
    amlfs = "owner" in meta or "group" in meta
    if "modtime" in meta:
        text = meta["modtime"]
        stamp = _number(text, 10, _INT64, signed=True)
        if stamp is None:
            stamp = _amlfs_ns(text)
        _put(found, "mtime_ns", stamp, name, "modtime", text,
             "Unix nanoseconds or a 2006-01-02 15:04:05 -0700 time")
    if "permissions" in meta:
        text = meta["permissions"]
        # azcopy's own rule: octal in the amlfs style (owner/group keys, or a leading 0).
        octal = amlfs or (len(text) > 1 and text.startswith("0"))
        _put_mode(found, name, "permissions", text, 8 if octal else 10)
    for key, field in (("posix_owner", "uid"), ("posix_group", "gid"), ("owner", "uid"),
                       ("group", "gid")):
        if key in meta:
            _put(found, field, _number(meta[key], 10, _UINT32), name, key, meta[key],
                 "a numeric id")
    # Flags only where the mode has no type bits (amlfs): azcopy also flags a
    # symlink is_char_dev and a socket hdi_isfolder (its mode test is bitwise).
    if "kind" not in found:
        if meta.get("is_symlink", "").lower() == "true":
            found["kind"] = SYMLINK
        elif meta.get("hdi_isfolder", "").lower() == "true":
            found["kind"] = DIR
    return AMLFS if amlfs else AZCOPY


def _put(found: dict[str, object], field: str, value: int | None, name: str, key: str,
         text: str, what: str) -> bool:
    if value is None:
        log.debug("azblob: blob %r: metadata %s=%r is not %s: ignored", name, key, text[:64],
                  what)
        return False
    found[field] = value
    return True


def _put_mode(found: dict[str, object], name: str, key: str, text: str, base: int) -> None:
    """A mode's permission bits, and the kind its type bits say if it has some."""
    mode = _number(text, base, _UINT32)
    if _put(found, "perm", None if mode is None else mode & PERM, name, key, text,
            "an octal mode" if base == 8 else "a mode"):
        assert mode is not None
        kind = _kind(mode)
        if kind is not None:
            found["kind"] = kind


def _kind(mode: int) -> str | None:
    """The kind a mode's type bits say (None: it has none, as amlfs modes); a blob of
    another type (a fifo, a socket, a device) holds bytes: a file."""
    fmt = mode & S_IFMT
    if fmt == 0:
        return None
    return DIR if fmt == S_IFDIR else SYMLINK if fmt == S_IFLNK else FILE


def _number(text: str, base: int, top: int, signed: bool = False) -> int | None:
    """``text`` as an integer in ``base`` within [0, top] ([-top-1, top] if
    ``signed``), digits only (no spaces, underscores or base prefix)."""
    digits = text[1:] if signed and text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 22:
        return None
    try:
        value = int(text, base)
    except ValueError:
        return None
    low = -top - 1 if signed else 0
    return value if low <= value <= top else None


def rfc3339_ns(text: str) -> int | None:
    """An RFC 3339 time as nanoseconds since the epoch; None if it is not one."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    offset = 0 if zulu else (int(oh) * 60 + int(om)) * 60 * (1 if sign == "+" else -1)
    return _ns(year, month, day, hour, minute, second, frac, offset)


def _amlfs_ns(text: str) -> int | None:
    m = _AMLFS_TIME.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, sign, oh, om = m.groups()
    offset = (int(oh) * 60 + int(om)) * 60 * (1 if sign == "+" else -1)
    return _ns(year, month, day, hour, minute, second, frac, offset)


def _ns(year: str, month: str, day: str, hour: str, minute: str, second: str,
        frac: str | None, offset: int) -> int | None:
    try:
        when = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        tzinfo=timezone.utc)
    except ValueError:
        return None
    if offset and abs(offset) >= 24 * 3600:
        return None
    seconds = (when - _EPOCH) // _SECOND - offset
    return seconds * _NS + int((frac or "0").ljust(9, "0"))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)


# -- writing a convention back --

def rfc3339(stamp_ns: int) -> str:
    """``stamp_ns`` as rclone writes ``mtime``: UTC, always nine fractional digits."""
    seconds, frac = divmod(stamp_ns, _NS)
    when = datetime.fromtimestamp(seconds, timezone.utc)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


def amlfs_time(stamp_ns: int) -> str:
    """``stamp_ns`` in azcopy's amlfs layout (whole seconds, UTC)."""
    when = datetime.fromtimestamp(stamp_ns // _NS, timezone.utc)
    return f"{when:%Y-%m-%d %H:%M:%S} +0000"


# The keys each style writes (all of them for a style chosen by the user).
_WRITES = {
    RCLONE: frozenset({"mtime", "mode", "uid", "gid"}),
    AZCOPY: frozenset({"modtime", "permissions", "posix_owner", "posix_group"}),
    AMLFS: frozenset({"modtime", "permissions", "owner", "group"}),
}
_META = "azure.meta."


def style_of(names: Iterable[str]) -> tuple[str, frozenset[str]]:
    """The convention a backed-up file came with, from the names of its extended
    attributes (``azure.meta.<key>``, see :mod:`plakar_azblob.mapping.attributes`), and the
    keys of it the blob had: ``(NONE, frozenset())`` when it had none."""
    keys = {name[len(_META):].lower() for name in names if name[:len(_META)].lower() == _META}
    if "mtime" in keys:
        style = RCLONE
    elif "modtime" in keys or "permissions" in keys:
        style = AMLFS if "owner" in keys or "group" in keys else AZCOPY
    else:
        return NONE, frozenset()
    return style, _WRITES[style] & keys


def written(style: str, kind: str, stamp_ns: int, perm: int, uid: int, gid: int,
            keys: frozenset[str] | None = None) -> dict[str, str]:
    """The metadata ``style`` writes for a restored file of ``kind``; with ``keys``
    (the convention's keys the original blob had), only those."""
    type_bits = {FILE: S_IFREG, DIR: S_IFDIR, SYMLINK: S_IFLNK}[kind]
    perm &= PERM
    if style == RCLONE:
        meta = {"mtime": rfc3339(stamp_ns), "mode": f"{type_bits | perm:o}", "uid": str(uid),
                "gid": str(gid)}
    elif style == AZCOPY:
        meta = {"modtime": str(stamp_ns), "permissions": str(type_bits | perm),
                "posix_owner": str(uid), "posix_group": str(gid)}
    elif style == AMLFS:
        meta = {"modtime": amlfs_time(stamp_ns), "permissions": f"{perm:04o}",
                "owner": str(uid), "group": str(gid)}
    else:
        return {}
    if keys is not None:
        meta = {key: value for key, value in meta.items() if key in keys}
    if style != RCLONE and kind == SYMLINK:
        meta["is_symlink"] = "true"
    if style != RCLONE and kind == DIR:
        meta["hdi_isfolder"] = "true"
    return meta
