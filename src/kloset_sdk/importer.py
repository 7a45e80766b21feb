"""The importer (source) connector interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping

from .options import LocationFlag, Options
from .records import Record, Result


class Importer(ABC):
    """Produces the records of a snapshot.

    Subclasses are built by plakar's ``Init`` with ``(proto, config,
    options)`` and set ``origin``, ``type`` and ``root`` (shown by ``plakar
    ls``). A bad configuration raises :class:`~kloset_sdk.ConfigError`.
    """

    origin: str = ""
    type: str = ""
    root: str = "/"
    flags: LocationFlag = LocationFlag.NONE

    def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
        self.proto = proto
        self.config = config
        self.options = options

    def ping(self) -> None:
        """Check that the source is reachable; raise if not."""

    @abstractmethod
    def scan(self) -> Iterator[Record]:
        """Yield every record, lazily. File content is fetched only through
        each record's ``opener``, which the SDK calls when plakar opens it."""

    def acknowledge(self, result: Result) -> None:
        """plakar has processed a record (``result.error`` says how)."""

    def close(self) -> None:
        """Release everything."""
