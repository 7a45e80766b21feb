"""Read a blob as consecutive ranges, several at once, in order.

Each range is one ``Get Blob`` request of at most ``range_size`` bytes,
conditional on the ETag the caller saw: if the blob changes while it is
read, the next request fails instead of mixing two versions. At most
``max_concurrency`` ranges are held at a time, so memory stays bounded
whatever the blob's size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from azure.core import MatchConditions
from azure.storage.blob import BlobClient


def read_range(blob: BlobClient, etag: str, offset: int, length: int) -> bytes:
    """``length`` bytes from ``offset``, provided the blob still has ``etag``."""
    downloader = blob.download_blob(offset, length, etag=etag,
                                    match_condition=MatchConditions.IfNotModified,
                                    max_concurrency=1, decompress=False)
    # chunks(), not readall(): readall() copies the body through a BytesIO (two
    # more copies of every range); a body fetched in one request is one chunk,
    # which join() returns as is.
    data = b"".join(downloader.chunks())
    if len(data) != length:
        raise EOFError(f"got {len(data)} bytes instead of {length}")
    return data


def read_ranges(
    blob: BlobClient, etag: str, size: int, *, range_size: int, max_concurrency: int,
) -> Iterator[bytes]:
    """The whole blob (``size`` bytes) as chunks of ``range_size`` bytes.

    The first range is fetched before this returns, so a blob that is gone
    or changed fails here rather than on the first read.
    """
    if size == 0:
        empty = blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified,
                                   decompress=False).readall()
        if empty:
            raise EOFError("the blob is no longer empty")
        return iter(())
    first = read_range(blob, etag, 0, min(range_size, size))
    return _following(blob, etag, size, first, range_size, max(1, max_concurrency))


def _following(
    blob: BlobClient, etag: str, size: int, first: bytes, range_size: int, window: int,
) -> Iterator[bytes]:
    yield first
    offsets = iter(range(len(first), size, range_size))
    pending: deque[Future[bytes]] = deque()
    pool = ThreadPoolExecutor(window, thread_name_prefix="azblob-range")

    def fetch_next() -> None:
        offset = next(offsets, None)
        if offset is not None:
            pending.append(pool.submit(read_range, blob, etag, offset,
                                       min(range_size, size - offset)))

    try:
        for _ in range(window):
            fetch_next()
        while pending:
            data = pending.popleft().result()
            fetch_next()
            yield data
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
