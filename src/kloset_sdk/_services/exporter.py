"""The exporter service (protocol page §6): its messages as calls of an :class:`Exporter`."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._proto import connectors_pb2 as cpb
from .._proto import exporter_pb2 as pb
from .._wire.rpc import Cancelled
from ..content import IncomingContent
from ..errors import ConnectorError
from ..exporter import Exporter
from ..options import Options
from .common import Service, abort, identity, message, options_from_proto, record_from_proto

log = logging.getLogger("kloset_sdk")

ExporterFactory = Callable[[str, dict[str, str], Options], Exporter]
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64


class ProtocolError(ConnectorError):
    """plakar sent something the protocol does not allow."""


class ExporterService(Service[Exporter]):
    def __init__(self, factory: ExporterFactory) -> None:
        super().__init__()
        self._factory = factory
        self._concurrency = DEFAULT_CONCURRENCY

    def Init(self, request: pb.InitRequest, context: Any) -> pb.InitResponse:
        options = options_from_proto(request.options)
        exp = self._init(context, lambda: self._factory(request.proto, dict(request.config),
                                                        options))
        if options.max_concurrency > 0:
            self._concurrency = min(options.max_concurrency, MAX_CONCURRENCY)
        return pb.InitResponse(**identity(exp))

    def Ping(self, request: pb.PingRequest, context: Any) -> pb.PingResponse:
        self._ping(context)
        return pb.PingResponse()

    def Export(self, request_iterator: Iterator[pb.ExportRequest],
               context: Any) -> Iterator[pb.ExportResponse]:
        try:
            exp = self._get()
        except ConnectorError as exc:
            abort(context, exc, "Export")
        results: queue.Queue[pb.ExportResponse | BaseException | None] = queue.Queue()
        receiver = threading.Thread(
            target=self._receive, args=(exp, request_iterator, results),
            name="export-receive", daemon=True)
        receiver.start()
        while (item := results.get()) is not None:
            if isinstance(item, BaseException):
                abort(context, item, "Export")
            yield item

    def _receive(self, exp: Exporter, requests: Iterator[pb.ExportRequest],
                 results: queue.Queue[pb.ExportResponse | BaseException | None]) -> None:
        """Read plakar's records and chunks, handing each record to a worker."""
        slots = threading.Semaphore(self._concurrency)

        def work(header: cpb.Record, content: IncomingContent | None) -> None:
            error = ""
            try:
                exp.export(record_from_proto(header), content)
            except Exception as exc:
                error = message(exc)
                log.debug("export of %s failed", header.pathname, exc_info=exc)
            finally:
                if content is not None:
                    content.drain()  # never leave the receiver blocked on a full queue
                slots.release()
            results.put(pb.ExportResponse(result=cpb.Result(header=header, error=error)))

        current: IncomingContent | None = None
        try:
            with ThreadPoolExecutor(self._concurrency, thread_name_prefix="export") as pool:
                try:
                    for request in requests:
                        packet = request.WhichOneof("packet")
                        if packet == "record":
                            if current is not None:
                                raise ProtocolError(
                                    "plakar sent a record before the end of the previous file")
                            header = request.record
                            content = IncomingContent() if header.hasReader else None
                            slots.acquire()
                            pool.submit(work, header, content)
                            current = content
                        elif packet == "chunk":
                            if current is None:
                                raise ProtocolError("plakar sent file content without a record")
                            chunk = request.chunk  # each access copies the bytes
                            if chunk:
                                current.feed(chunk)
                            else:
                                current.finish()
                                current = None
                finally:
                    if current is not None:
                        current.fail(ConnectorError("the restore was interrupted mid-file"))
        except Cancelled:
            results.put(None)
            return
        except Exception as exc:
            results.put(exc)
            return
        results.put(None)

    def Close(self, request: pb.CloseRequest, context: Any) -> pb.CloseResponse:
        self._close(context)
        return pb.CloseResponse()
