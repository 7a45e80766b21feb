"""Blob names of a Kloset store, identical to the official Go azblob connector.

``PREFIX/CONFIG`` and ``PREFIX/<dir>/XX/HEX`` where HEX is the 64 lowercase
hex digits of the object's 32-byte MAC and XX its first byte. With an empty
prefix the names have no leading slash.
"""

from __future__ import annotations

import re

from kloset_sdk import Resource

MAC_SIZE = 32

DIRS: dict[Resource, str] = {
    Resource.PACKFILE: "packfiles",
    Resource.STATE: "states",
    Resource.LOCK: "locks",
    # Not supported by the Go connector; named in the same style.
    Resource.ECC_PACKFILE: "ecc-packfiles",
    Resource.ECC_STATE: "ecc-states",
}

_OBJECT = re.compile(r"([0-9a-f]{2})/([0-9a-f]{64})")
_FANOUT_DIR = re.compile(r"[0-9a-f]{2}/?")


class LayoutError(ValueError):
    """A MAC, resource or blob name that does not fit the layout."""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def config_name(prefix: str) -> str:
    return _join(prefix, "CONFIG")


def resource_prefix(prefix: str, resource: Resource) -> str:
    """The name prefix of every object of ``resource``, ending with "/"."""
    try:
        return _join(prefix, DIRS[Resource(resource)] + "/")
    except (KeyError, ValueError):
        raise LayoutError(f"unsupported resource type {int(resource)}") from None


def object_name(prefix: str, resource: Resource, mac: bytes) -> str:
    if len(mac) != MAC_SIZE:
        raise LayoutError(f"invalid MAC: {len(mac)} bytes instead of {MAC_SIZE}")
    hexmac = mac.hex()
    return f"{resource_prefix(prefix, resource)}{hexmac[:2]}/{hexmac}"


def is_fanout_dir(start: str, name: str) -> bool:
    """True for ``START/XX`` entries that accounts with a hierarchical namespace list."""
    return bool(_FANOUT_DIR.fullmatch(name[len(start):]))


def parse_name(start: str, name: str) -> bytes:
    """The MAC encoded in ``name``, which must begin with ``start`` (a resource_prefix)."""
    m = _OBJECT.fullmatch(name[len(start):]) if name.startswith(start) else None
    if m is None or m.group(2)[:2] != m.group(1):
        raise LayoutError(f'unexpected blob "{name}": not a Kloset object name '
                          f"({start}XX/<64 hex digits>)")
    return bytes.fromhex(m.group(2))
