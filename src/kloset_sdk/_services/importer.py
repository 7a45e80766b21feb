"""The importer service (protocol page §5): its messages as calls of an :class:`Importer`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._proto import importer_pb2 as pb
from .._wire.rpc import Cancelled, Many
from ..errors import ConnectorError, NotFoundError
from ..importer import Importer
from ..options import Options
from ..records import Record, open_key
from .common import (
    Service,
    abort,
    chunk_messages,
    identity,
    options_from_proto,
    record_into,
    result_from_proto,
)
from .readahead import Openers

log = logging.getLogger("kloset_sdk")

ImporterFactory = Callable[[str, dict[str, str], Options], Importer]
# Records of a batch sent in one piece: a few dozen KiB, so that plakar gets the
# first ones of a long batch without waiting for the rest to be encoded.
SEND_BATCH = 256


def _key(rec: Any) -> str:
    """The open key of a record as plakar sends it, without converting the whole record."""
    return open_key(rec.pathname, rec.isXattr, rec.xattrName, rec.xattrType)


class ImporterService(Service[Importer]):
    def __init__(self, factory: ImporterFactory) -> None:
        super().__init__()
        self._factory = factory
        # Openers of records plakar has neither opened nor acknowledged yet.
        self._openers = Openers()

    def Init(self, request: pb.InitRequest, context: Any) -> pb.InitResponse:
        options = options_from_proto(request.options)
        imp = self._init(context, lambda: self._factory(request.proto, dict(request.config),
                                                        options))
        self._openers.clear()
        self._openers = Openers(imp.read_ahead)
        return pb.InitResponse(**identity(imp))

    def Ping(self, request: pb.PingRequest, context: Any) -> pb.PingResponse:
        self._ping(context)
        return pb.PingResponse()

    def Import(self, request_iterator: Iterator[pb.ImportRequest],
               context: Any) -> Iterator[pb.ImportResponse | Many]:
        try:
            imp = self._get()
        except ConnectorError as exc:
            abort(context, exc, "Import")
        acks: threading.Thread | None = None
        if type(imp).acknowledge is Importer.acknowledge and \
                hasattr(context, "take_requests_inline"):
            # Each acknowledgement only forgets its record's opener: done as it arrives,
            # in the connection's reader thread (waking a thread of our own for each
            # one cost ~15 us of CPU per record).
            context.take_requests_inline(self._acknowledged_inline)
        else:
            acks = threading.Thread(target=self._consume_acks, args=(imp, request_iterator),
                                    name="import-acks", daemon=True)
            acks.start()
        try:
            for item in imp.scan():
                if isinstance(item, Record):
                    yield self._response(item)
                    continue
                # A batch of records (see Importer.scan): sent SEND_BATCH at a time.
                if not isinstance(item, Sequence):
                    item = list(item)
                for start in range(0, len(item), SEND_BATCH):
                    yield Many(self._response(record)
                               for record in item[start:start + SEND_BATCH])
        except Exception as exc:
            abort(context, exc, "Import")
        yield pb.ImportResponse(finished=True)
        # The stream stays open until plakar has sent its last acknowledgement.
        if acks is not None:
            acks.join()
            return
        try:
            for _ in request_iterator:
                pass  # none: they went to _acknowledged_inline; this waits for the end
        except Cancelled:
            pass  # plakar went away; the RPC is already over

    def _response(self, record: Record) -> pb.ImportResponse:
        """The message of ``record``, its opener kept for plakar's Open."""
        if record.opener is not None and not record.error:
            info = record.file_info
            size = info.size if info is not None and not record.is_xattr else None
            self._openers.add(record.key, size, record.opener)
        response = pb.ImportResponse()
        record_into(response.record, record)
        return response

    def _acknowledged_inline(self, message: bytes) -> None:
        """One acknowledgement, still encoded (see Import): its record's opener is
        forgotten. Never raises: it runs in the connection's reader thread."""
        try:
            request = pb.ImportRequest.FromString(message)
            self._openers.acknowledged(_key(request.result.header))
        except Exception:
            log.exception("acknowledgement handling failed")

    def _consume_acks(self, imp: Importer, requests: Iterator[pb.ImportRequest]) -> None:
        # Converting each acknowledged record back is only worth it for an importer
        # that looks at the results (plakar acknowledges every record, xattrs too).
        notify = type(imp).acknowledge is not Importer.acknowledge
        try:
            for request in requests:
                self._openers.acknowledged(_key(request.result.header))
                if notify:
                    imp.acknowledge(result_from_proto(request.result))
        except Cancelled:
            pass  # plakar went away; the RPC is already over
        except Exception:
            log.exception("acknowledgement handling failed")

    def open_encoded(self, request: pb.OpenRequest, context: Any) -> Iterator[bytes]:
        """Open: its responses, encoded (common.chunk_messages), as the server sends them."""
        key = _key(request.record)
        opener = self._openers.open(key)
        if opener is None:
            abort(context, NotFoundError(f"{key}: does not exist"), "Open")
        try:
            for message in chunk_messages(opener()):
                if not context.is_active():
                    return  # plakar cancelled this read
                yield message
        except Exception as exc:
            abort(context, exc, "Open")

    def Close(self, request: pb.CloseRequest, context: Any) -> pb.CloseResponse:
        log.debug("closing: %d records opened, %d read ahead", self._openers.opened,
                  self._openers.read_ahead)
        self._openers.clear()
        self._close(context)
        return pb.CloseResponse()
