"""What plakar tells a connector when it starts it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class LocationFlag(enum.IntFlag):
    """Flags a connector returns from Init (kloset ``location.Flags``)."""

    NONE = 0
    LOCALFS = 1 << 0
    FILE = 1 << 1
    STREAM = 1 << 2
    NEEDACK = 1 << 3
    NOMERGE = 1 << 4
    # Exporter: ask plakar to send extended attributes (kloset >= 1.2).
    EXPORTXATTR = 1 << 5


@dataclass(frozen=True)
class Options:
    """The importer/exporter options of an Init request."""

    hostname: str = ""
    os: str = ""
    arch: str = ""
    cwd: str = ""
    max_concurrency: int = 0
    excludes: tuple[str, ...] = field(default_factory=tuple)
    noxattr: bool = False
