"""The exporter (destination) connector interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from .connector import Connector
from .content import IncomingContent
from .options import Options
from .records import Record


class Exporter(Connector, ABC):
    """Writes the records of a snapshot being restored.

    ``export`` is called once per record, from up to ``max_concurrency``
    threads at once; it returns when the record is durably written, or
    raises to report an error for that record alone.
    """

    def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
        self.proto = proto
        self.config = config
        self.options = options

    @abstractmethod
    def export(self, record: Record, content: IncomingContent | None) -> None:
        """Write one record. ``content`` streams the file (or xattr value)
        while plakar sends it; it is None for directories and symlinks."""
