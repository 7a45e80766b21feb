"""The storage (Kloset store) connector interface."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from .connector import Connector
from .content import IncomingContent
from .records import Readable


class Resource(enum.IntEnum):
    """Kinds of objects a Kloset store holds."""

    UNDEFINED = 0
    PACKFILE = 1
    STATE = 2
    LOCK = 3
    ECC_PACKFILE = 4
    ECC_STATE = 5


class StoreFlag(enum.IntFlag):
    NONE = 0
    HOT = 1  # packfiles plakar reads often: keep them fast


class Mode(enum.IntFlag):
    NONE = 0
    WRITE = 1 << 1
    READ = 1 << 2
    READ_WRITE = WRITE | READ


class Range(NamedTuple):
    offset: int
    length: int


class Store(Connector, ABC):
    """Keeps a Kloset store's objects, each named by its 32-byte MAC."""

    def __init__(self, proto: str, config: Mapping[str, str]) -> None:
        self.proto = proto
        self.config = config

    @abstractmethod
    def create(self, config: bytes) -> None:
        """Make a new store holding ``config``; raise AlreadyExistsError if one is there."""

    @abstractmethod
    def open(self) -> bytes:
        """Return the exact bytes given to ``create``; NotFoundError if none."""

    def mode(self) -> Mode:
        return Mode.READ_WRITE

    def size(self) -> int:
        """Total bytes stored, or -1 when unknown."""
        return -1

    @abstractmethod
    def list(self, resource: Resource, flags: StoreFlag) -> Iterable[bytes]:
        """The MACs of every object of ``resource``."""

    @abstractmethod
    def put(self, resource: Resource, mac: bytes, content: IncomingContent,
            flags: StoreFlag) -> int:
        """Store an object from ``content``; never visible half-written. Returns its size."""

    @abstractmethod
    def get(self, resource: Resource, mac: bytes, range: Range | None,
            flags: StoreFlag) -> Readable:
        """The object's bytes (or ``range`` of them); NotFoundError if missing."""

    @abstractmethod
    def delete(self, resource: Resource, mac: bytes, flags: StoreFlag) -> None:
        """Remove an object."""
