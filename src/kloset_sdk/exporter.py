"""The exporter (destination) connector interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from .content import IncomingContent
from .options import LocationFlag, Options
from .records import Record


class Exporter(ABC):
    """Writes the records of a snapshot being restored.

    ``export`` is called once per record, from up to ``max_concurrency``
    threads at once; it returns when the record is durably written, or
    raises to report an error for that record alone.
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
        """Check that the destination is reachable; raise if not."""

    @abstractmethod
    def export(self, record: Record, content: IncomingContent | None) -> None:
        """Write one record. ``content`` streams the file (or xattr value)
        while plakar sends it; it is None for directories and symlinks."""

    def close(self) -> None:
        """Release everything (called after the last record)."""
