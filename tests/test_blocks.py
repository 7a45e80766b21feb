"""The block uploader and the ranged reader, against Azurite."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azurite import Azurite

from plakar_azblob.transfer.blocks import MAX_BLOCKS, block_size_for, upload_in_blocks
from plakar_azblob.transfer.direct import BrokenRead
from plakar_azblob.transfer.ranges import read_range, read_ranges, resumed

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def container(azurite: Azurite) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.create_container(f"blocks-{uuid.uuid4().hex[:12]}")


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        return super().read(size)


@pytest.mark.parametrize("size", [0, 1, MiB - 1, MiB, MiB + 1, 5 * MiB + 123])
def test_upload_sizes(container: ContainerClient, size: int) -> None:
    data = os.urandom(size)
    blob = container.get_blob_client(f"sizes/{size}")
    written = upload_in_blocks(blob, io.BytesIO(data), MiB, 4,
                               content_settings=ContentSettings(content_type="x/y"))
    assert written == size
    assert blob.download_blob().readall() == data
    assert blob.get_blob_properties().content_settings.content_type == "x/y"
    committed, _ = blob.get_block_list("committed")
    # Content of at most one block goes up in a single request, without blocks.
    assert len(committed) == (0 if size <= MiB else -(-size // MiB))


def test_overwrites_and_leaves_no_uncommitted_blocks(container: ContainerClient) -> None:
    blob = container.get_blob_client("again")
    upload_in_blocks(blob, io.BytesIO(b"a" * 3 * MiB), MiB, 2)
    upload_in_blocks(blob, io.BytesIO(b"b" * 2 * MiB), MiB, 2)
    assert blob.download_blob().readall() == b"b" * 2 * MiB
    _, uncommitted = blob.get_block_list("uncommitted")
    assert uncommitted == []


@pytest.mark.parametrize("size", [10, 3 * MiB])
def test_access_conditions_are_passed_on(container: ContainerClient, size: int) -> None:
    blob = container.get_blob_client(f"create-once-{size}")
    once: dict[str, Any] = {"match_condition": MatchConditions.IfMissing}
    upload_in_blocks(blob, io.BytesIO(b"1" * size), MiB, 2, **once)
    with pytest.raises(ResourceExistsError):
        upload_in_blocks(blob, io.BytesIO(b"2" * size), MiB, 2, **once)
    assert blob.download_blob().readall() == b"1" * size


def test_reader_failure_commits_nothing(container: ContainerClient) -> None:
    class Failing(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            if self.tell() >= 2 * MiB:
                raise OSError("plakar went away")
            return super().read(size)

    blob = container.get_blob_client("never")
    with pytest.raises(OSError):
        upload_in_blocks(blob, Failing(b"z" * 4 * MiB), MiB, 2)
    assert not blob.exists()


def test_block_size_grows_for_huge_content() -> None:
    assert block_size_for(None, 4 * MiB) == 4 * MiB
    assert block_size_for(100 * MiB, 4 * MiB) == 4 * MiB
    huge = 400 * 1024 * MiB
    assert block_size_for(huge, 4 * MiB) * MAX_BLOCKS >= huge


def test_ranges_in_order_with_a_window(container: ContainerClient) -> None:
    data = os.urandom(9 * MiB + 7)
    blob = container.get_blob_client("ranges")
    blob.upload_blob(data)
    etag = blob.get_blob_properties().etag
    fetch = partial(read_range, blob, etag)
    chunks = list(read_ranges(fetch, len(data), range_size=2 * MiB, max_concurrency=3))
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == [2 * MiB] * 4 + [MiB + 7]


def test_ranges_fail_when_the_blob_changes(container: ContainerClient) -> None:
    blob = container.get_blob_client("changing")
    blob.upload_blob(b"x" * 3 * MiB)
    etag = blob.get_blob_properties().etag
    fetch = partial(read_range, blob, etag)
    chunks = read_ranges(fetch, 3 * MiB, range_size=MiB, max_concurrency=1)
    assert next(chunks) == b"x" * MiB
    blob.upload_blob(b"y" * 3 * MiB, overwrite=True)
    with pytest.raises(ResourceModifiedError):
        list(chunks)
    with pytest.raises(ResourceModifiedError):
        read_ranges(fetch, 3 * MiB, range_size=MiB, max_concurrency=1)


def _stream(data: bytes, start: int, piece: int, cut_at: int | None) -> Iterator[bytes]:
    """``data`` from ``start`` in pieces, breaking (BrokenRead) after ``cut_at`` bytes."""
    sent = 0
    for i in range(start, len(data), piece):
        if cut_at is not None and sent >= cut_at:
            raise BrokenRead("cut")
        yield data[i:i + piece]
        sent += piece


def test_a_broken_stream_resumes_where_it_stopped() -> None:
    data = os.urandom(10 * 1000)
    starts: list[int] = []

    def again(offset: int) -> Iterator[bytes]:
        starts.append(offset)
        return _stream(data, offset, 1000, cut_at=3000)

    out = b"".join(resumed(_stream(data, 0, 1000, cut_at=3000), len(data), again, retries=5))
    assert out == data and starts == [3000, 6000, 9000]
    # Out of retries: the break is raised, after the bytes that came.
    got = []
    with pytest.raises(BrokenRead):
        for piece in resumed(_stream(data, 0, 1000, cut_at=3000), len(data), again, retries=1):
            got.append(piece)
    assert b"".join(got) == data[:6000]


def test_a_stream_that_ends_early_or_runs_long_is_an_error() -> None:
    """The blob changed: never fewer nor more bytes than listed."""
    data = os.urandom(5000)

    def again(offset: int) -> Iterator[bytes]:
        raise AssertionError("nothing broke: nothing to resume")

    with pytest.raises(EOFError):
        list(resumed(iter([data[:100]]), len(data), again, retries=3))
    with pytest.raises(EOFError):
        list(resumed(iter([data + b"x"]), len(data), again, retries=3))
