"""Read a blob as consecutive ranges, several at once, in order.

Each range is one ``Get Blob`` request of at most ``range_size`` bytes,
made by the caller's ``fetch(offset, length)``, conditional on the ETag the
caller saw: if the blob changes while it is read, the next request fails
instead of mixing two versions. At most ``max_concurrency`` ranges are held
at a time per blob, and ranges fetched ahead of need share one budget for
the whole process, so memory stays bounded whatever the blobs' sizes and
however many are read at once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import BlobClient

# fetch(offset, length): exactly those bytes of the blob (or an exception).
Fetch = Callable[[int, int], bytes]


def resumed(first: Iterator[bytes], size: int, again: Callable[[int], Iterator[bytes]],
            retries: int) -> Iterator[bytes]:
    """A blob of ``size`` bytes read as one stream (``first``): when the connection
    breaks (``BrokenRead``), ``again(offset)`` streams it from where it stopped, at
    most ``retries`` times in all. Never more nor fewer than ``size`` bytes."""
    from .direct import BrokenRead

    offset, failures = 0, 0
    pieces = first
    while offset < size:
        try:
            for piece in pieces:
                if offset + len(piece) > size:
                    raise EOFError("the blob is longer than it was")
                offset += len(piece)
                yield piece
        except BrokenRead:
            failures += 1
            if failures > retries:
                raise
        else:
            if offset < size:
                raise EOFError(f"got {offset} bytes instead of {size}")
            return
        pieces = again(offset)


def read_range(blob: BlobClient, etag: str | None, offset: int, length: int) -> bytes:
    """``length`` bytes from ``offset`` through the Azure SDK, provided the blob
    still has ``etag`` (when given)."""
    # No etag keyword at all without one: the SDK would hand it to the HTTP layer.
    condition: dict[str, Any] = \
        {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
    downloader = blob.download_blob(offset, length, max_concurrency=1, decompress=False,
                                    **condition)
    # chunks(), not readall(): readall() copies the body through a BytesIO (two
    # more copies of every range); a body fetched in one request is one chunk,
    # which join() returns as is.
    data = b"".join(downloader.chunks())
    if len(data) != length:
        raise EOFError(f"got {len(data)} bytes instead of {length}")
    return data


def read_ranges(fetch: Fetch, size: int, *, range_size: int,
                max_concurrency: int) -> Iterator[bytes]:
    """The whole blob (``size`` bytes, not 0) as chunks of ``range_size`` bytes.

    The first range is fetched before this returns, so a blob that is gone
    or changed fails here rather than on the first read.
    """
    first = fetch(0, min(range_size, size))
    return _following(fetch, size, first, range_size, max(1, max_concurrency))


class _Budget:
    """Bytes that all readers of the process may hold in prefetched ranges together."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if n > self._free:
                return False
            self._free -= n
            return True

    def give(self, n: int) -> None:
        if n:
            with self._lock:
                self._free += n


# Ranges fetched ahead of the one a reader waits for, all readers together:
# plakar opens up to -concurrency files at once (the number of CPUs by
# default), so a per-reader window alone would let memory grow with it.
PREFETCH_BYTES = 12 * 1024 * 1024
_prefetch = _Budget(PREFETCH_BYTES)


def _following(fetch: Fetch, size: int, first: bytes, range_size: int,
               window: int) -> Iterator[bytes]:
    """``first``, then the following ranges in order.

    Each reader always has the range it needs next in flight; ranges beyond
    it are fetched ahead only while the shared prefetch budget allows, and at
    most ``window`` ranges are held in all.
    """
    yield first
    if len(first) >= size:
        return
    offsets = iter(range(len(first), size, range_size))
    upcoming = next(offsets, None)
    pending: deque[tuple[Future[bytes], int]] = deque()  # (range, budget bytes it holds)
    pool = ThreadPoolExecutor(window, thread_name_prefix="azblob-range")
    held = 0  # budget bytes of the range being consumed

    def fetch_next(ahead: bool) -> bool:
        nonlocal upcoming
        if upcoming is None or len(pending) >= window:
            return False
        length = min(range_size, size - upcoming)
        if ahead and not _prefetch.take(length):
            return False
        future = pool.submit(fetch, upcoming, length)
        pending.append((future, length if ahead else 0))
        upcoming = next(offsets, None)
        return True

    try:
        while pending or upcoming is not None:
            if not pending:
                fetch_next(ahead=False)
            while fetch_next(ahead=True):
                pass
            future, held = pending.popleft()
            data = future.result()
            yield data
            del data
            _prefetch.give(held)
            held = 0
    finally:
        _prefetch.give(held)
        for future, amount in pending:
            future.cancel()
            _prefetch.give(amount)
        pool.shutdown(wait=False, cancel_futures=True)
