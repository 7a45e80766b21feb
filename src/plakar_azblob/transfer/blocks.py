"""Upload a stream to a block blob without ever showing a partial object.

The stream is read one block at a time; blocks are staged in parallel
(at most ``max_concurrency`` in flight, so memory stays bounded) and the
blob appears only when the block list is committed at the end. Content
that fits in a single block is sent in one request instead.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from azure.storage.blob import BlobBlock, BlobClient, ContentSettings

# Azure's limits for a block blob.
MAX_BLOCKS = 50_000
MAX_BLOCK_SIZE = 4000 * 1024 * 1024


class Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...


class Slots(Protocol):
    """A semaphore counting block buffers (``threading.Semaphore`` fits)."""

    def acquire(self) -> bool: ...
    def release(self) -> None: ...


class _NoLimit:
    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def block_size_for(size_hint: int | None, block_size: int) -> int:
    """The block size to use: ``block_size``, grown so that ``size_hint``
    bytes fit in Azure's 50,000 blocks."""
    if size_hint is None or size_hint <= block_size * MAX_BLOCKS:
        return block_size
    return min(-(-size_hint // MAX_BLOCKS), MAX_BLOCK_SIZE)


def upload_in_blocks(
    blob: BlobClient,
    reader: Reader,
    block_size: int,
    max_concurrency: int,
    *,
    size_hint: int | None = None,
    buffers: Slots | None = None,
    content_md5: bool = False,
    **kwargs: Any,
) -> int:
    """Write everything ``reader`` yields to ``blob``; return the byte count.

    ``reader.read(n)`` must return ``n`` bytes unless the content ends (as
    ``IncomingContent.read`` and files do). ``kwargs`` go to the request that
    creates the blob (``upload_blob`` or ``commit_block_list``): content
    settings, metadata, tier, and access conditions such as
    ``match_condition=MatchConditions.IfMissing`` (create only; give it no
    ``etag``: the Azure SDK would pass that on to the HTTP layer). ``size_hint``,
    when known, lets huge content grow the block size to fit. ``buffers``,
    shared by concurrent uploads, caps the blocks they hold in memory together:
    one slot is taken before each block is read and given back once it is sent.
    With ``content_md5`` the blob gets the MD5 of its content as Content-MD5
    (the service computes it itself for content sent in one request; staged
    blocks are hashed as they are read and the MD5 set at the commit).
    """
    block_size = block_size_for(size_hint, block_size)
    slots: Slots = buffers if buffers is not None else _NoLimit()
    slots.acquire()
    handed_over = False
    try:
        first = reader.read(block_size)
        # One byte more tells content of exactly one block from a longer one.
        carry = reader.read(1) if len(first) == block_size else b""
        if not carry:
            blob.upload_blob(first, length=len(first), overwrite=True, **kwargs)
            return len(first)
        handed_over = True  # the slot now belongs to the first block's staging
    finally:
        if not handed_over:
            slots.release()
    digest = hashlib.md5() if content_md5 else None
    return _staged(blob, reader, first, carry, block_size, max(1, max_concurrency), kwargs,
                   slots, digest)


def _staged(
    blob: BlobClient, reader: Reader, first: bytes, carry: bytes, block_size: int,
    window: int, commit_kwargs: dict[str, Any], slots: Slots, digest: Any = None,
) -> int:
    token = secrets.token_hex(8)  # so that a concurrent upload's blocks never mix with ours
    ids: list[str] = []
    in_flight: deque[Future[Any]] = deque()
    pool = ThreadPoolExecutor(window, thread_name_prefix="azblob-block")
    total = 0
    try:
        data = first
        while data:
            if len(ids) == MAX_BLOCKS:
                raise ValueError(f"the content needs more than {MAX_BLOCKS} blocks "
                                 f"of {block_size} bytes")
            block_id = base64.b64encode(f"{token}-{len(ids):06d}".encode()).decode()
            ids.append(block_id)
            if digest is not None:
                digest.update(data)
            if len(in_flight) >= window:
                in_flight.popleft().result()
            future = pool.submit(blob.stage_block, block_id, data, length=len(data))
            # Runs on success, failure and cancellation alike: no slot ever leaks.
            future.add_done_callback(lambda _: slots.release())
            in_flight.append(future)
            total += len(data)
            slots.acquire()
            try:
                data = carry + reader.read(block_size - len(carry))
                carry = b""
            except BaseException:
                slots.release()
                raise
            if not data:
                slots.release()
        while in_flight:
            in_flight.popleft().result()
    finally:
        # Queued blocks are dropped; running ones are waited for, so that a
        # failed upload returns only once it holds no buffer and no thread.
        pool.shutdown(wait=True, cancel_futures=True)
    if digest is not None:
        settings = commit_kwargs.get("content_settings") or ContentSettings()
        settings.content_md5 = bytearray(digest.digest())
        commit_kwargs = {**commit_kwargs, "content_settings": settings}
    blob.commit_block_list([BlobBlock(block_id=i) for i in ids], **commit_kwargs)
    return total
