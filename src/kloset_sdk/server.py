"""Entry point: run one connector on stdin/stdout.

The connector's servicer is served by :mod:`kloset_sdk.rpc` on the HTTP/2
connection plakar opens over the process's two pipes: frames are read from
stdin in this thread and written to stdout by one writer thread; each RPC
runs in a worker thread.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from ._exporter_service import ExporterService
from ._importer_service import ImporterService
from ._proto import exporter_pb2 as epb
from ._proto import importer_pb2 as ipb
from ._proto import store_pb2 as spb
from ._store_service import StoreService
from .rpc import Kind, Method, Server
from .transport import MMAP_THRESHOLD, STORE_MMAP_THRESHOLD, stdio_pipes, tune_malloc

LOG_ENV = "KLOSET_LOG"
KINDS = ("importer", "exporter", "storage")

_U, _S = False, True
# service -> {method: (streaming request, streaming response, request type,
#                      servicer attribute, response already encoded)}
_PROTOCOL: dict[str, dict[str, tuple[bool, bool, Any, str, bool]]] = {
    "importer.Importer": {
        "Init": (_U, _U, ipb.InitRequest, "Init", False),
        "Ping": (_U, _U, ipb.PingRequest, "Ping", False),
        "Import": (_S, _S, ipb.ImportRequest, "Import", False),
        "Open": (_U, _S, ipb.OpenRequest, "open_encoded", True),
        "Close": (_U, _U, ipb.CloseRequest, "Close", False),
    },
    "plakar.exporter.Exporter": {
        "Init": (_U, _U, epb.InitRequest, "Init", False),
        "Ping": (_U, _U, epb.PingRequest, "Ping", False),
        "Export": (_S, _S, epb.ExportRequest, "Export", False),
        "Close": (_U, _U, epb.CloseRequest, "Close", False),
    },
    "store.Store": {
        "Init": (_U, _U, spb.InitRequest, "Init", False),
        "Create": (_U, _U, spb.CreateRequest, "Create", False),
        "Open": (_U, _U, spb.OpenRequest, "Open", False),
        "Ping": (_U, _U, spb.PingRequest, "Ping", False),
        "Mode": (_U, _U, spb.ModeRequest, "Mode", False),
        "Size": (_U, _U, spb.SizeRequest, "Size", False),
        "List": (_U, _U, spb.ListRequest, "List", False),
        "Put": (_S, _U, spb.PutRequest, "Put", False),
        "Get": (_U, _S, spb.GetRequest, "get_encoded", True),
        "Delete": (_U, _U, spb.DeleteRequest, "Delete", False),
        "Close": (_U, _U, spb.CloseRequest, "Close", False),
    },
}
# kind -> (servicer class, gRPC service name).
_SERVICES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "importer": (ImporterService, "importer.Importer"),
    "exporter": (ExporterService, "plakar.exporter.Exporter"),
    "storage": (StoreService, "store.Store"),
}
_SERVICES["store"] = _SERVICES["storage"]  # plakar's other name for the role


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


def methods(service_name: str, servicer: Any) -> dict[str, Method]:
    """The gRPC methods of ``servicer`` for ``service_name``, by path."""
    table = {}
    for name, (stream_in, stream_out, request, attribute, encoded) in \
            _PROTOCOL[service_name].items():
        kind = Kind((stream_in, stream_out))
        table[f"/{service_name}/{name}"] = Method(
            kind, getattr(servicer, attribute), request.FromString,
            None if encoded else _serialize)
    return table


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
    """The RPC server of connector ``kind`` (importer, exporter or storage), and its servicer."""
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
    tune_malloc(STORE_MMAP_THRESHOLD if isinstance(service, StoreService) else MMAP_THRESHOLD)
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
