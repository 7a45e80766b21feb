"""The importer (source) connector interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from .connector import Connector
from .options import Options
from .records import Record, Result


@dataclass(frozen=True)
class ReadAheadSettings:
    """How far ahead of plakar an importer reads (:attr:`Importer.read_ahead`)."""

    max_size: int = 0  # largest record read ahead, bytes (0: never read ahead)
    budget: int = 8 << 20  # bytes held or being read ahead, all records together
    depth: int = 32  # most records read ahead of the last one opened
    workers: int = 8  # reads in flight


class Importer(Connector, ABC):
    """Produces the records of a snapshot.

    Subclasses are built by plakar's ``Init`` with ``(proto, config,
    options)`` and set ``origin``, ``type`` and ``root`` (shown by ``plakar
    ls``). A bad configuration raises :class:`~kloset_sdk.ConfigError`.

    ``read_ahead``: with a ``max_size``, the content of file records up to
    that size may be read (their opener called, from another thread) before
    plakar opens them, while plakar is opening records one after the other
    (the first record plakar acknowledges without opening it stops that: an
    incremental backup reads nothing ahead). For sources where each read
    costs a round trip; openers must then be safe to call from any thread,
    and more than once.
    """

    read_ahead: ReadAheadSettings = ReadAheadSettings()

    def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
        self.proto = proto
        self.config = config
        self.options = options

    @abstractmethod
    def scan(self) -> Iterator[Record | Sequence[Record]]:
        """Yield every record, lazily. File content is fetched only through
        each record's ``opener``, which the SDK calls when plakar opens it.

        Records that are ready together (say, those of one page of a remote
        listing) may be yielded as one sequence: they are then sent to plakar
        together, which costs less per record than one at a time. A record
        yielded alone is sent at once."""

    def acknowledge(self, result: Result) -> None:
        """plakar has processed a record (``result.error`` says how)."""
