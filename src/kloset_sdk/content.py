"""Streams of content between plakar and a connector."""

from __future__ import annotations

import io
import queue
from collections.abc import Iterable, Iterator

from .records import Readable

CHUNK_SIZE = 1 << 20  # plakar's chunk size, both directions (protocol §1)


class IncomingContent(io.RawIOBase):
    """Content arriving from plakar, readable while it arrives.

    Either the SDK feeds chunks in from another thread (``feed``/``finish``,
    through a bounded queue, so a slow connector slows plakar down instead of
    filling memory), or the content pulls them from ``source`` as it is read.
    """

    _EOF = b""

    def __init__(self, max_chunks: int = 8, source: Iterator[bytes] | None = None) -> None:
        super().__init__()
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(max_chunks)
        self._source = source
        self._pending = memoryview(b"")
        self._done = False
        self.received = 0

    # -- producer side (the SDK) --
    def feed(self, chunk: bytes) -> None:
        if chunk:
            self.received += len(chunk)
            self._queue.put(chunk)

    def finish(self) -> None:
        self._queue.put(self._EOF)

    def fail(self, error: BaseException) -> None:
        self._queue.put(error)

    # -- consumer side (the connector) --
    def readable(self) -> bool:
        return True

    def _next(self) -> bool:
        if self._done:
            return False
        item: bytes | BaseException
        if self._source is not None:
            # Skip empty chunks: only the end of the source ends the content.
            item = next((c for c in self._source if c), self._EOF)
            self.received += len(item)
        else:
            item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if not item:
            self._done = True
            return False
        self._pending = memoryview(item)
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._pending and not self._next():
            return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes, waiting for them unless the content ends first."""
        if size is None or size < 0:
            return b"".join(self.chunks())
        # Views of the received chunks, copied once by join (or not at all when
        # the read is exactly one whole chunk).
        parts: list[memoryview] = []
        want = size
        while want > 0:
            if not self._pending and not self._next():
                break
            part = self._pending[:want]
            self._pending = self._pending[len(part):]
            parts.append(part)
            want -= len(part)
        if len(parts) == 1:
            return _as_bytes(parts[0])
        return b"".join(parts)

    def chunks(self) -> Iterator[bytes]:
        """The remaining content, chunk by chunk as it arrived."""
        if self._pending:
            chunk = _as_bytes(self._pending)
            self._pending = memoryview(b"")
            yield chunk
        while self._next():
            chunk = _as_bytes(self._pending)
            self._pending = memoryview(b"")
            yield chunk

    def drain(self) -> None:
        """Consume whatever is left, so the producer is never blocked."""
        try:
            for _ in self.chunks():
                pass
        except Exception:
            pass


def _as_bytes(view: memoryview) -> bytes:
    """``view`` as bytes: the chunk itself when the view covers all of it, else a copy."""
    whole = view.obj
    if type(whole) is bytes and len(view) == len(whole):
        return whole
    return bytes(view)


def iter_chunks(content: Readable, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield ``content`` in chunks of at most ``size`` bytes, none empty."""
    for chunk in _pieces(content, size):
        yield chunk if type(chunk) is bytes else bytes(chunk)


def _pieces(content: Readable, size: int) -> Iterator[bytes | memoryview]:
    """``content`` in pieces of at most ``size`` bytes, none empty: the pieces of
    a larger chunk are views of it (not copies). The runtime frames Open and Get
    responses from them (``_services.common.chunk_messages``)."""
    read = getattr(content, "read", None)
    try:
        if read is not None:
            while True:
                chunk = read(size)
                if not chunk:
                    return
                yield chunk
        else:
            assert isinstance(content, Iterable)
            for chunk in content:
                if len(chunk) <= size:
                    if chunk:
                        yield chunk
                    continue
                view = memoryview(chunk)
                for start in range(0, len(view), size):
                    yield view[start:start + size]
    finally:
        close = getattr(content, "close", None)
        if close is not None:
            close()
