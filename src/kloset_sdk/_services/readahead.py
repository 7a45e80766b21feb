"""The openers of an importer's records, and reading small ones ahead of plakar.

plakar opens the records it wants one after the other, a few at a time
(``-concurrency``: the number of CPUs minus one by default), so on a remote
source every small file costs it a full round trip. Yet the importer knows
what comes next: the records it sent and plakar has not handled yet, in
order. Once plakar is seen opening records one after another, the content
of the next small ones is read in the background, within a byte budget, so
that their Open finds it ready.

It stops as soon as plakar acknowledges a record without opening it (an
incremental backup skipping an unchanged file, or plakar's second importer,
which only counts): reads not yet started are cancelled and nothing more
is read until plakar opens records in a row again. The depth grows with
that run (0, then 2, 4, 6... records ahead), so an incremental backup of
unchanged files reads nothing, and one with scattered changes reads at most
a few records it will not use. A read ahead that fails is forgotten: the
Open then calls the opener itself, and reports its error as it would have.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..content import CHUNK_SIZE, iter_chunks
from ..importer import ReadAheadSettings
from ..records import Opener, Readable


@dataclass(eq=False)
class _Entry:
    key: str
    seq: int
    size: int | None  # None: not a file (never read ahead, never a sign of skipping)
    opener: Opener
    opened: bool = False
    done: bool = False  # acknowledged
    future: Future[list[bytes]] | None = None
    reserved: int = 0  # budget bytes this entry holds


@dataclass
class _Order:
    """Entries in the order they were sent; acknowledged ones leave from the front."""

    items: list[_Entry] = field(default_factory=list)
    base: int = 0  # seq of items[0]
    # Entries before this index are acknowledged. They leave the list by the
    # thousand: deleting the front of a list moves all the rest, and plakar may
    # lag tens of thousands of records behind (one move per acknowledgement was
    # a fifth of the reader thread's CPU).
    head: int = 0

    def append(self, entry: _Entry) -> None:
        self.items.append(entry)

    def after(self, entry: _Entry) -> Iterator[_Entry]:
        for i in range(max(entry.seq - self.base + 1, self.head), len(self.items)):
            yield self.items[i]

    def trim(self) -> None:
        items, head = self.items, self.head
        while head < len(items) and items[head].done:
            head += 1
        if head >= 1024 and head * 2 >= len(items):
            del items[:head]
            self.base += head
            head = 0
        self.head = head


class Openers:
    """The openers of the records plakar has neither opened nor acknowledged yet."""

    def __init__(self, settings: ReadAheadSettings | None = None) -> None:
        self._settings = settings or ReadAheadSettings()
        # Reentrant: a read that ends while we forget it releases its budget at once.
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._order = _Order()
        # The entries whose future is set: what a skip cancels. Kept apart so that a
        # skip costs the reads in flight, not every record plakar has yet to
        # acknowledge (tens of thousands while it lags behind a long listing).
        self._reading: set[_Entry] = set()
        self._seq = 0
        self._streak = 0  # records opened since plakar last skipped one
        self._held = 0  # budget bytes in use
        self._pool: ThreadPoolExecutor | None = None
        self.read_ahead = 0  # records whose content was read ahead (for tests and benches)
        self.opened = 0  # records opened

    def add(self, key: str, size: int | None, opener: Opener) -> None:
        """A record sent to plakar, whose content ``opener`` gives; ``size``: its
        size if it is a file, else None (extended attributes)."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._forget(old)
            entry = _Entry(key, self._seq, size, opener)
            self._seq += 1
            self._entries[key] = entry
            self._order.append(entry)

    def open(self, key: str) -> Callable[[], Readable] | None:
        """plakar opens ``key``: what gives its content (None if unknown); reads the
        records after it ahead when plakar has been opening records in a row."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if not entry.opened:
                entry.opened = True
                self.opened += 1
                if entry.size is not None:  # a file: extended attributes do not count
                    self._streak += 1
            future, entry.future = entry.future, None
            self._reading.discard(entry)
            self._fill(entry)
        if future is None:
            return entry.opener
        return lambda: self._replay(entry, future)

    def acknowledged(self, key: str) -> None:
        """plakar is done with ``key`` (opened or skipped)."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return
            if not entry.opened and entry.size is not None:
                self._skipped()
            self._forget(entry)
            self._order.trim()

    def clear(self) -> None:
        with self._lock:
            for entry in self._entries.values():
                self._forget(entry)
            self._entries.clear()
            self._reading.clear()
            self._order = _Order(base=self._seq)
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- reading ahead (with the lock held) --

    def _fill(self, opened: _Entry) -> None:
        s = self._settings
        depth = min(s.depth, 2 * (self._streak - 1))
        if s.max_size <= 0 or depth <= 0:
            return
        for entry in self._order.after(opened):
            if depth <= 0:
                break
            if entry.done or entry.opened:
                continue
            if entry.size is None:
                continue
            depth -= 1
            if entry.future is not None or entry.size > s.max_size:
                continue
            if self._held + entry.size > s.budget:
                break
            self._start(entry, entry.size)

    def _start(self, entry: _Entry, size: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._settings.workers,
                                            thread_name_prefix="read-ahead")
        entry.reserved = max(size, 1)
        self._held += entry.reserved
        entry.future = self._pool.submit(_read_all, entry.opener, self._settings.max_size)
        self._reading.add(entry)
        self.read_ahead += 1

    def _skipped(self) -> None:
        """plakar acknowledged a record it did not open: stop reading ahead."""
        self._streak = 0
        for entry in list(self._reading):
            if entry.future is not None and entry.future.cancel():
                entry.future = None
                self._reading.discard(entry)
                self._release(entry)

    def _forget(self, entry: _Entry) -> None:
        entry.done = True
        future, entry.future = entry.future, None
        self._reading.discard(entry)
        if future is None or future.cancel():
            self._release(entry)
        else:  # still reading: its bytes are held until it ends
            future.add_done_callback(lambda _: self._release_now(entry))

    def _release_now(self, entry: _Entry) -> None:
        with self._lock:
            self._release(entry)

    def _release(self, entry: _Entry) -> None:
        self._held -= entry.reserved
        entry.reserved = 0

    # -- at Open --

    def _replay(self, entry: _Entry, future: Future[list[bytes]]) -> Readable:
        """The content read ahead, or (if that failed) the opener's own."""
        try:
            chunks = future.result()
        except Exception as exc:
            import logging
            logging.getLogger("kloset_sdk").debug("read ahead of %s failed: %r", entry.key, exc)
            chunks = None
        finally:
            self._release_now(entry)
        return entry.opener() if chunks is None else chunks


def _read_all(opener: Opener, limit: int) -> list[bytes]:
    """The whole content of ``opener``, in chunks; fails beyond ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    for chunk in iter_chunks(opener(), CHUNK_SIZE):
        total += len(chunk)
        if total > limit:
            raise ValueError("content larger than its record said")
        chunks.append(chunk)
    return chunks
