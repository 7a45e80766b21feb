"""The storage service (protocol page §7): its messages as calls of a :class:`Store`."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .._proto import store_pb2 as pb
from ..content import CHUNK_SIZE, IncomingContent
from ..errors import ConnectorError
from ..storage import Range, Resource, Store, StoreFlag
from .common import Service, abort, chunk_messages, identity

StoreFactory = Callable[[str, dict[str, str]], Store]
MAC_SIZE = 32


def _resource(value: int) -> Resource:
    try:
        return Resource(value)
    except ValueError:
        raise ConnectorError(f"unknown storage resource type {value}") from None


def _mac(value: bytes) -> bytes:
    if len(value) != MAC_SIZE:
        raise ConnectorError(f"invalid MAC of {len(value)} bytes (expected {MAC_SIZE})")
    return bytes(value)


class StoreService(Service[Store]):
    def __init__(self, factory: StoreFactory) -> None:
        super().__init__()
        self._factory = factory

    def Init(self, request: pb.InitRequest, context: Any) -> pb.InitResponse:
        store = self._init(context, lambda: self._factory(request.proto, dict(request.config)))
        return pb.InitResponse(**identity(store))

    def Create(self, request: pb.CreateRequest, context: Any) -> pb.CreateResponse:
        try:
            self._get().create(bytes(request.config))
        except Exception as exc:
            abort(context, exc, "Create")
        return pb.CreateResponse()

    def Open(self, request: pb.OpenRequest, context: Any) -> pb.OpenResponse:
        try:
            return pb.OpenResponse(config=self._get().open())
        except Exception as exc:
            abort(context, exc, "Open")

    def Ping(self, request: pb.PingRequest, context: Any) -> pb.PingResponse:
        self._ping(context)
        return pb.PingResponse()

    def Mode(self, request: pb.ModeRequest, context: Any) -> pb.ModeResponse:
        try:
            return pb.ModeResponse(mode=int(self._get().mode()))
        except Exception as exc:
            abort(context, exc, "Mode")

    def Size(self, request: pb.SizeRequest, context: Any) -> pb.SizeResponse:
        try:
            return pb.SizeResponse(size=self._get().size())
        except Exception as exc:
            abort(context, exc, "Size")

    def List(self, request: pb.ListRequest, context: Any) -> pb.ListResponse:
        try:
            store = self._get()
            macs = [_mac(m) for m in store.list(_resource(request.type), StoreFlag(request.flags))]
        except Exception as exc:
            abort(context, exc, "List")
        return pb.ListResponse(macs=macs)

    def Put(self, request_iterator: Iterator[pb.PutRequest], context: Any) -> pb.PutResponse:
        content: IncomingContent | None = None
        try:
            first = next(request_iterator, None)
            if first is None:
                raise ConnectorError("Put received no object header")
            resource, mac = _resource(first.type), _mac(first.mac)
            # The object's bytes are pulled from the stream as the store reads them.
            content = IncomingContent(source=_chunks(first, request_iterator, context))
            written = self._get().put(resource, mac, content, StoreFlag(first.flags))
            content.drain()
        except Exception as exc:
            if content is not None:
                # Take the rest of the object before failing: plakar (v1.1) reports a
                # Put ended while it was still sending as "failed to send chunk: EOF",
                # and this error's message would be lost.
                content.drain()
            abort(context, exc, "Put")
        return pb.PutResponse(bytes_written=written)

    def get_encoded(self, request: pb.GetRequest, context: Any) -> Iterator[bytes]:
        """Get: its responses, encoded (common.chunk_messages), as the server sends them."""
        try:
            rng = None
            if request.HasField("range"):
                rng = Range(request.range.offset, request.range.length)
            data = self._get().get(_resource(request.type), _mac(request.mac), rng,
                                          StoreFlag(request.flags))
            messages = chunk_messages(data)
            if rng is None or rng.length > CHUNK_SIZE:
                # Several chunks: fetch the next ones while plakar receives these.
                messages = _read_ahead(messages, READ_AHEAD)
            for message in messages:
                if not context.is_active():
                    return
                yield message
        except Exception as exc:
            abort(context, exc, "Get")

    def Delete(self, request: pb.DeleteRequest, context: Any) -> pb.DeleteResponse:
        try:
            self._get().delete(_resource(request.type), _mac(request.mac),
                                      StoreFlag(request.flags))
        except Exception as exc:
            abort(context, exc, "Delete")
        return pb.DeleteResponse()

    def Close(self, request: pb.CloseRequest, context: Any) -> pb.CloseResponse:
        self._close(context)
        return pb.CloseResponse()


# Chunks (at most 1 MiB each) a Get may hold ready ahead of plakar.
READ_AHEAD = 8
_END = object()


def _read_ahead(chunks: Iterator[bytes], depth: int) -> Iterator[bytes]:
    """``chunks``, pulled by a helper thread up to ``depth`` chunks ahead.

    The store's reads (network requests) then overlap with the sending of
    what they returned, instead of alternating with it. An error reaches
    the consumer after the chunks that came before it.
    """
    ready: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_END)
        except BaseException as exc:
            put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name="get-ahead", daemon=True).start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _chunks(first: pb.PutRequest, rest: Iterator[pb.PutRequest],
            context: Any) -> Iterator[bytes]:
    yield first.chunk  # plakar sends none here, but the protocol does not forbid it
    for request in rest:
        yield request.chunk
    # The request stream ends only when plakar half-closes it: a cancelled Put
    # raises Cancelled instead (rpc.Call.requests), and is never stored.
