"""What every connector has: its identity for plakar, ping and close."""

from __future__ import annotations

from .options import LocationFlag


class Connector:
    """Base of importers, exporters and stores.

    ``origin``, ``type`` and ``root`` are sent to plakar by Init (shown by
    ``plakar ls``, kept in the snapshot header); ``flags`` are kloset's
    location flags.
    """

    origin: str = ""
    type: str = ""
    root: str = "/"
    flags: LocationFlag = LocationFlag.NONE

    def ping(self) -> None:
        """Check that the other end is reachable; raise if not."""

    def close(self) -> None:
        """Release everything.

        Called once, by plakar's Close. plakar may still call other methods
        during or just after it (kloset deletes a store's lock from a
        goroutine that races Close): they should keep working.
        """
