"""What the three service adapters share.

Each adapter (:mod:`.importer`, :mod:`.exporter`, :mod:`.storage`) turns
the messages of one gRPC service into calls of one connector interface; none
imports another. What they have in common is here: the connector's life
(built at Init, Ping, Close), errors as statuses plakar can show, records
and options as messages, content as encoded messages, and the table of
every service's methods that the server is built from.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, Generic, NoReturn, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from .._proto import connectors_pb2 as pb
from .._proto import exporter_pb2 as epb
from .._proto import importer_pb2 as ipb
from .._proto import store_pb2 as spb
from .._wire.rpc import Kind, Method, Status
from ..connector import Connector
from ..content import CHUNK_SIZE, _pieces
from ..errors import (
    AlreadyExistsError,
    ConfigError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
)
from ..options import Options
from ..records import FileInfo, Readable, Record, Result, XattrType

log = logging.getLogger("kloset_sdk")

C = TypeVar("C", bound=Connector)


# -- the connector's life: built by Init, then Ping and Close --

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


# -- connector exceptions as gRPC statuses plakar can show --

_CODES: list[tuple[type[BaseException], Status]] = [
    (ConfigError, Status.INVALID_ARGUMENT),
    (NotFoundError, Status.NOT_FOUND),
    (AlreadyExistsError, Status.ALREADY_EXISTS),
    (PermissionDeniedError, Status.PERMISSION_DENIED),
    (FileNotFoundError, Status.NOT_FOUND),
    (FileExistsError, Status.ALREADY_EXISTS),
    (PermissionError, Status.PERMISSION_DENIED),
    (NotImplementedError, Status.UNIMPLEMENTED),
    (ValueError, Status.INVALID_ARGUMENT),
]


def message(exc: BaseException) -> str:
    """One line for the user: the exception's own text, or its kind when it has none."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ConnectorError) and text:
        return text
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def code(exc: BaseException) -> Status:
    for kind, status in _CODES:
        if isinstance(exc, kind):
            return status
    return Status.UNKNOWN


def abort(context: Any, exc: BaseException, rpc: str) -> NoReturn:
    """End the RPC with ``exc`` as a clear status; a traceback only at debug level."""
    text = message(exc)
    log.debug("%s failed: %s", rpc, text, exc_info=exc)
    if not isinstance(exc, ConnectorError):
        log.info("%s failed: %s", rpc, text)
    context.abort(code(exc), text)
    raise AssertionError("unreachable")  # context.abort always raises


# -- records and options as protobuf messages --

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _seconds_nanos(when: datetime, nanos: int) -> tuple[int, int]:
    """What Timestamp.FromDatetime computes (seconds floored, nanoseconds >= 0; a
    naive time is UTC) plus ``nanos``, without its time tuple and calendar.timegm:
    once a record's largest cost."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = when - _EPOCH
    return delta.days * 86400 + delta.seconds, delta.microseconds * 1000 + nanos


def timestamp(when: datetime, nanos: int = 0) -> Timestamp:
    """``when`` and ``nanos`` nanoseconds (0-999) past its microsecond."""
    seconds, nanos = _seconds_nanos(when, nanos)
    return Timestamp(seconds=seconds, nanos=nanos)


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=timezone.utc)


def fileinfo_to_proto(fi: FileInfo) -> pb.FileInfo:
    return pb.FileInfo(
        name=fi.name, size=fi.size, mode=fi.mode & 0xFFFFFFFF,
        mod_time=timestamp(fi.mod_time, fi.mod_time_nanos),
        dev=fi.dev, ino=fi.ino, uid=fi.uid, gid=fi.gid, nlink=fi.nlink,
        username=fi.username, groupname=fi.groupname, flags=fi.flags,
    )


def fileinfo_from_proto(fi: pb.FileInfo) -> FileInfo:
    return FileInfo(
        name=fi.name, size=fi.size, mode=fi.mode, mod_time=from_timestamp(fi.mod_time),
        dev=fi.dev, ino=fi.ino, uid=fi.uid, gid=fi.gid, nlink=fi.nlink,
        username=fi.username, groupname=fi.groupname, flags=fi.flags,
        mod_time_nanos=fi.mod_time.nanos % 1000,
    )


# File info fields most records leave at their defaults.
_RARE_FILE_FIELDS = ("dev", "ino", "uid", "gid", "username", "groupname", "flags")


def record_to_proto(record: Record) -> pb.Record:
    msg = pb.Record()
    record_into(msg, record)
    return msg


def record_into(msg: pb.Record, record: Record) -> None:
    """Set ``record`` into the empty message ``msg`` (say, the record of an ImportResponse,
    which building a Record then copying it in would cost a copy more).

    Only the fields that differ from their defaults are set: a proto3 scalar at its
    default is not encoded anyway, and each assignment costs a call into protobuf
    (setting all ~20 of them was most of the record's cost). The file info's
    message and its time are always present, as plakar's own records have them."""
    if record.pathname:
        msg.pathname = record.pathname
    if record.error:
        msg.error = record.error
    elif record.has_reader:
        msg.hasReader = True
    if record.is_xattr:
        msg.isXattr = True
        if record.xattr_name:
            msg.xattrName = record.xattr_name
        if record.xattr_type:
            msg.xattrType = int(record.xattr_type)  # type: ignore[assignment]
    if record.target:
        msg.target = record.target
    if record.extended_attributes:
        msg.extendedAttributes.extend(record.extended_attributes)
    if record.file_attributes:
        msg.fileAttributes = record.file_attributes
    fi = record.file_info
    if fi is not None:
        # Set in place: building a FileInfo and its Timestamp, then copying both in,
        # was a tenth of the importer's CPU per record.
        out = msg.fileInfo
        out.SetInParent()
        if fi.name:
            out.name = fi.name
        if fi.size:
            out.size = fi.size
        if fi.mode:
            out.mode = fi.mode & 0xFFFFFFFF
        when = out.mod_time
        when.seconds, nanos = _seconds_nanos(fi.mod_time, fi.mod_time_nanos)
        if nanos:
            when.nanos = nanos
        if fi.nlink:
            out.nlink = fi.nlink
        for name in _RARE_FILE_FIELDS:
            value = getattr(fi, name)
            if value:
                setattr(out, name, value)
    elif not record.error and not record.is_xattr:
        # plakar rejects such a record as invalid; say which one, clearly.
        raise ValueError(f"record {record.pathname!r} has neither file info nor error")


def record_from_proto(msg: pb.Record) -> Record:
    return Record(
        pathname=msg.pathname,
        file_info=fileinfo_from_proto(msg.fileInfo) if msg.HasField("fileInfo") else None,
        error=msg.error,
        is_xattr=msg.isXattr,
        xattr_name=msg.xattrName,
        xattr_type=XattrType.ADS if int(msg.xattrType) == XattrType.ADS else XattrType.EXTENDED,
        target=msg.target,
        extended_attributes=tuple(msg.extendedAttributes),
        file_attributes=msg.fileAttributes,
        has_reader=msg.hasReader,
    )


def result_from_proto(msg: pb.Result) -> Result:
    return Result(record_from_proto(msg.header), msg.error)


def result_to_proto(result: Result) -> pb.Result:
    header = record_to_proto(result.record)
    return pb.Result(header=header, error=result.error)


def options_from_proto(msg: Any) -> Options:
    """The Options of an importer's or exporter's InitRequest."""
    return Options(
        hostname=msg.hostname, os=msg.os, arch=msg.arch, cwd=msg.cwd,
        max_concurrency=int(msg.maxconcurrency), excludes=tuple(msg.excludes),
        noxattr=msg.noxattr,
    )


# -- content as encoded messages (Open, Get) --

def _field_header(number: int, length: int) -> bytes:
    """Protobuf tag of length-delimited field ``number`` and the varint ``length``."""
    head = bytearray()
    for value in (number << 3 | 2, length):
        while value >= 0x80:
            head.append(value & 0x7F | 0x80)
            value >>= 7
        head.append(value)
    return bytes(head)


_FULL_CHUNK_HEADER = _field_header(1, CHUNK_SIZE)


def chunk_messages(content: Readable, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """``content`` as encoded messages whose only field is ``bytes chunk = 1`` (OpenResponse,
    GetResponse), each of at most ``size`` content bytes, none empty.

    Each message is built with one copy of its bytes: building it through
    protobuf would copy them four times (slicing a larger chunk, the message's
    construction, its encoding and the encoding's conversion to bytes), which
    was a sixth of the importer's CPU while reading large blobs. The method
    table registers no serializer for these responses (see :data:`_PROTOCOL`).
    """
    for piece in _pieces(content, size):
        n = len(piece)
        head = _FULL_CHUNK_HEADER if n == CHUNK_SIZE else _field_header(1, n)
        yield b"".join((head, piece))


# -- the methods of each service --

_U, _S = False, True
# service -> {method: (streaming request, streaming response, request type,
#                      adapter attribute, response already encoded)}
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


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


def methods(service_name: str, adapter: Any) -> dict[str, Method]:
    """The gRPC methods of ``adapter`` for ``service_name``, by path."""
    table = {}
    for name, (stream_in, stream_out, request, attribute, encoded) in \
            _PROTOCOL[service_name].items():
        kind = Kind((stream_in, stream_out))
        table[f"/{service_name}/{name}"] = Method(
            kind, getattr(adapter, attribute), request.FromString,
            None if encoded else _serialize)
    return table
