"""A record's time to the nanosecond: plakar keeps nanoseconds, a datetime only
microseconds, so FileInfo carries the rest and the wire carries them both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kloset_sdk import EPOCH, FileInfo, Record, from_ns
from kloset_sdk._services.common import fileinfo_from_proto, fileinfo_to_proto

T = 1583066096123456789  # 2020-03-01 12:34:56.123456789 UTC


@pytest.mark.parametrize("stamp", [T, 0, 999, 1000, -1, -(10**18) + 7, 4102444800999999999])
def test_from_ns_and_back(stamp: int) -> None:
    when, nanos = from_ns(stamp)
    assert 0 <= nanos <= 999
    fi = FileInfo("f", 1, 0o644, when, mod_time_nanos=nanos)
    assert fi.mod_time_ns == stamp


def test_nanoseconds_cross_the_wire_both_ways() -> None:
    when, nanos = from_ns(T)
    assert (when, nanos) == (datetime(2020, 3, 1, 12, 34, 56, 123456, tzinfo=UTC), 789)
    record = Record.file("/f", size=3, mod_time=when, mod_time_nanos=nanos, opener=None)
    assert record.file_info is not None
    msg = fileinfo_to_proto(record.file_info)
    assert (msg.mod_time.seconds, msg.mod_time.nanos) == (T // 10**9, T % 10**9)
    back = fileinfo_from_proto(msg)
    assert back == record.file_info and back.mod_time_ns == T


def test_a_record_without_nanoseconds_is_sent_as_before() -> None:
    msg = fileinfo_to_proto(FileInfo("f", 1, 0o644, datetime(2021, 1, 2, 3, 4, 5, 6, UTC)))
    assert msg.mod_time.nanos == 6000
    assert fileinfo_to_proto(FileInfo("f", 1, 0o644, EPOCH)).mod_time.nanos == 0


def test_a_symlink_names_its_extended_attributes() -> None:
    link = Record.symlink("/l", "target", xattrs=("azure.meta.modtime",), uid=5)
    assert link.extended_attributes == ("azure.meta.modtime",)
    assert link.file_info is not None and link.file_info.uid == 5
