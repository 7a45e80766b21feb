"""Entry point: run one connector on stdin/stdout."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc
import grpc._server  # imported by grpc.server(): load it with the rest

from ._exporter_service import ExporterService
from ._importer_service import ImporterService
from ._proto import exporter_pb2_grpc, importer_pb2_grpc, store_pb2_grpc
from ._store_service import StoreService
from .transport import MMAP_THRESHOLD, STORE_MMAP_THRESHOLD, serve_stdio

LOG_ENV = "KLOSET_LOG"
# Threads serving RPCs: an Import or Export stream holds one for its whole
# life and each concurrent Open/Get/Put another; created only when needed.
MAX_WORKERS = 256
# plakar never sends messages over 4 MiB; allow some headroom on our side.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.max_send_message_length", 16 << 20),
    # BDP probing grows each stream's receive window to many MiB, which grpc
    # then buffers on our side of Put and Export streams (~60 MiB seen in a
    # store); the fixed window still moves over 1 GiB/s through the pipes.
    ("grpc.http2.bdp_probe", 0),
]

KINDS = ("importer", "exporter", "storage")
# kind -> (servicer class, generated function registering it on a server).
_SERVICES: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], None]]] = {
    "importer": (ImporterService, importer_pb2_grpc.add_ImporterServicer_to_server),
    "exporter": (ExporterService, exporter_pb2_grpc.add_ExporterServicer_to_server),
    "storage": (StoreService, store_pb2_grpc.add_StoreServicer_to_server),
}
_SERVICES["store"] = _SERVICES["storage"]  # plakar's other name for the role
# Streams of content served by a method yielding messages already encoded
# (content.chunk_messages) instead of the generated one: service -> {method: attribute}.
_ENCODED_RESPONSES = {"importer.Importer": {"Open": "open_encoded"},
                      "store.Store": {"Get": "get_encoded"}}


def _as_is(message: bytes) -> bytes:
    return message


class _Registrar:
    """Stands for the server in a generated ``add_*Servicer_to_server``: registers
    its handlers, with those of ``_ENCODED_RESPONSES`` served by the servicer's
    encoding method and their messages sent as they are."""

    def __init__(self, server: grpc.Server, servicer: Any) -> None:
        self._server = server
        self._servicer = servicer
        self.registered = False

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # made below from the same method handlers

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        handlers = dict(handlers)
        for name, attribute in _ENCODED_RESPONSES.get(service, {}).items():
            handlers[name] = handlers[name]._replace(
                unary_stream=getattr(self._servicer, attribute), response_serializer=_as_is)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, handlers),))
        self._server.add_registered_method_handlers(service, handlers)
        self.registered = True


def setup_logging() -> None:
    """Log to stderr (plakar shows it); quiet unless KLOSET_LOG asks otherwise."""
    level_name = os.environ.get(LOG_ENV, "warning").upper()
    level = getattr(logging, level_name, logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def build_server(kind: str, factory: Callable[..., Any]) -> tuple[grpc.Server, Any]:
    """A gRPC server with the servicer of ``kind`` (importer, exporter or storage)."""
    server = grpc.server(ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="rpc"),
                         options=_CHANNEL_OPTIONS)
    if kind not in _SERVICES:
        raise ValueError(f"unknown connector kind {kind!r} (expected one of {', '.join(KINDS)})")
    service_class, add_to_server = _SERVICES[kind]
    service = service_class(factory)
    registrar = _Registrar(server, service)
    add_to_server(service, registrar)
    if not registrar.registered:
        raise RuntimeError("the generated gRPC code registered no method handlers")
    return server, service


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
    threshold = STORE_MMAP_THRESHOLD if isinstance(service, StoreService) else MMAP_THRESHOLD
    code = 0
    try:
        serve_stdio(server, mmap_threshold=threshold)
    except Exception:
        logging.getLogger("kloset_sdk").exception("transport failed")
        code = 1
    finally:
        logging.shutdown()
        sys.stderr.flush()
        # Connector threads may still be blocked in network calls: exit now,
        # since plakar waits for this process before it can finish.
        exit(code)
