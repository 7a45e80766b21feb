"""Conversions between SDK records and their protobuf messages."""

from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from ._proto import connectors_pb2 as pb
from .records import FileInfo, Record, Result, XattrType


def timestamp(when: datetime) -> Timestamp:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=timezone.utc)


def fileinfo_to_proto(fi: FileInfo) -> pb.FileInfo:
    return pb.FileInfo(
        name=fi.name, size=fi.size, mode=fi.mode & 0xFFFFFFFF, mod_time=timestamp(fi.mod_time),
        dev=fi.dev, ino=fi.ino, uid=fi.uid, gid=fi.gid, nlink=fi.nlink,
        username=fi.username, groupname=fi.groupname, flags=fi.flags,
    )


def fileinfo_from_proto(fi: pb.FileInfo) -> FileInfo:
    return FileInfo(
        name=fi.name, size=fi.size, mode=fi.mode, mod_time=from_timestamp(fi.mod_time),
        dev=fi.dev, ino=fi.ino, uid=fi.uid, gid=fi.gid, nlink=fi.nlink,
        username=fi.username, groupname=fi.groupname, flags=fi.flags,
    )


def record_to_proto(record: Record) -> pb.Record:
    msg = pb.Record(
        hasReader=record.has_reader and not record.error,
        pathname=record.pathname,
        error=record.error,
        isXattr=record.is_xattr,
        xattrName=record.xattr_name,
        xattrType=int(record.xattr_type),  # type: ignore[arg-type]
        target=record.target,
        extendedAttributes=list(record.extended_attributes),
        fileAttributes=record.file_attributes,
    )
    if record.file_info is not None:
        msg.fileInfo.CopyFrom(fileinfo_to_proto(record.file_info))
    elif not record.error and not record.is_xattr:
        # plakar rejects such a record as invalid; say which one, clearly.
        raise ValueError(f"record {record.pathname!r} has neither file info nor error")
    return msg


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
