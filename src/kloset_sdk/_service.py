"""What the three servicers share: building the connector, Ping and Close."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._status import abort
from .connector import Connector
from .errors import ConnectorError

C = TypeVar("C", bound=Connector)


class Service(Generic[C]):
    def __init__(self) -> None:
        self._connector: C | None = None
        self._closed = False  # close() is called once
        self._close_lock = threading.Lock()

    def _get(self) -> C:
        if self._connector is None:
            raise ConnectorError("the connector was used before Init")
        return self._connector

    def _init(self, context: Any, build: Callable[[], C]) -> C:
        try:
            self._connector, self._closed = build(), False
        except Exception as exc:
            abort(context, exc, "Init")
        return self._connector

    def _ping(self, context: Any) -> None:
        try:
            self._get().ping()
        except Exception as exc:
            abort(context, exc, "Ping")

    def _close(self, context: Any) -> None:
        # The connector stays reachable after Close: plakar may still send an
        # RPC during or just after it (kloset releases a store's lock from a
        # goroutine that races Close; refused, the lock would be left behind).
        with self._close_lock:
            connector = None if self._closed else self._connector
            self._closed = True
        if connector is not None:
            try:
                connector.close()
            except Exception as exc:
                abort(context, exc, "Close")


def identity(connector: Connector) -> dict[str, Any]:
    """The fields of an InitResponse."""
    return {"origin": connector.origin, "type": connector.type, "root": connector.root,
            "flags": int(connector.flags)}
