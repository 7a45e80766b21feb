"""Serve one connector on plakar's stdin and stdout.

The connector's service adapter (:mod:`kloset_sdk._services`) is served by
:mod:`kloset_sdk._wire.rpc` on the HTTP/2 connection plakar opens over the
process's two pipes: frames are read from stdin in this thread and written
to stdout by one writer thread; each RPC runs in a worker thread.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from .._services.common import methods
from .._services.exporter import ExporterService
from .._services.importer import ImporterService
from .._services.storage import StoreService
from .._wire.pipes import stdio_pipes
from .._wire.rpc import Server
from .malloc import (
    IMPORTER_MMAP_THRESHOLD,
    MMAP_THRESHOLD,
    STORE_MMAP_THRESHOLD,
    tune_malloc,
)

LOG_ENV = "KLOSET_LOG"
KINDS = ("importer", "exporter", "storage")

# kind -> (service adapter, gRPC service name).
_SERVICES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "importer": (ImporterService, "importer.Importer"),
    "exporter": (ExporterService, "plakar.exporter.Exporter"),
    "storage": (StoreService, "store.Store"),
}
_SERVICES["store"] = _SERVICES["storage"]  # plakar's other name for the role


def setup_logging() -> None:
    """Log to stderr (plakar shows it); quiet unless KLOSET_LOG asks otherwise."""
    level_name = os.environ.get(LOG_ENV, "warning").upper()
    level = getattr(logging, level_name, logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def build_server(kind: str, factory: Callable[..., Any]) -> tuple[Server, Any]:
    """The RPC server of connector ``kind`` (importer, exporter or storage), and its
    service adapter."""
    if kind not in _SERVICES:
        raise ValueError(f"unknown connector kind {kind!r} (expected one of {', '.join(KINDS)})")
    service_class, service_name = _SERVICES[kind]
    service = service_class(factory)
    return Server(methods(service_name, service)), service


def serve(kind: str, factory: Callable[..., Any],
          exit: Callable[[int], NoReturn] = os._exit) -> NoReturn:
    """Serve the connector built by ``factory`` on stdio, then exit the process.

    ``kind`` is "importer", "exporter" or "storage"; ``factory`` is called on
    plakar's Init with ``(proto, config, options)`` (``(proto, config)`` for
    a store) and returns the connector. Never returns: the process exits as
    soon as plakar closes stdin, through ``exit`` (``os._exit``: no clean-up
    of the threads that may still wait on the network).
    """
    setup_logging()
    server, service = build_server(kind, factory)
    tune_malloc(STORE_MMAP_THRESHOLD if isinstance(service, StoreService) else
                IMPORTER_MMAP_THRESHOLD if isinstance(service, ImporterService) else
                MMAP_THRESHOLD)
    code = 0
    try:
        with stdio_pipes() as (rfd, wfd):
            server.serve(rfd, wfd)
            logging.getLogger("kloset_sdk").debug("stdin closed: stopping")
    except Exception:
        logging.getLogger("kloset_sdk").exception("transport failed")
        code = 1
    finally:
        logging.shutdown()
        sys.stderr.flush()
        # Connector threads may still be blocked in network calls: exit now,
        # since plakar waits for this process before it can finish.
        exit(code)
