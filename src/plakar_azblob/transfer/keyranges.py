"""One listing as key ranges fetched ahead and in parallel, handed out in name order.

A List Blobs page holds at most 5000 names and the real service takes about
a second to answer one: listed one page after the other, a million blobs
take more than three minutes, whatever the client does with them. Here:

- The next pages are on their way while the current one is used: up to
  ``concurrency`` requests in flight, at most ``window`` pages fetched and not
  yet used (the memory bound, whatever the number of blobs).
- Once the first page shows there is more (a NextMarker), the rest of the
  name space is cut into ranges ``[start, stop)``: each is listed with
  ``startFrom=start`` (service version 2026-02-06) and its pages followed by
  their markers until a name reaches ``stop``. Cuts are guessed for about
  ``RANGE_PAGES`` pages each from the density of names already listed
  (:class:`.keyspace.KeySpace`); a range that turns out longer is cut again
  while it is listed, the remainder becoming a range of its own. Ranges that
  turn out short cost a request each and nothing else.
- Pages are handed out range after range, each range's in name order, and
  the names of a page outside its range dropped: the caller sees exactly
  what one sequential listing gives, each name once.
- Whether the service takes ``startFrom`` is learnt from the first answer to a
  range that uses it (a 400 or 501, or names below it: the parameter was
  ignored). Until then the first range is not used up past its end; if
  ``startFrom`` is not taken, the other ranges are dropped and the first goes
  on to the end, sequentially (prefetched still), said once in the log.

A failed page (after the pipeline's own retries) fails the listing when its
range's turn comes, not before: what came before it is handed out first.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from azure.core.exceptions import HttpResponseError

from .keyspace import KeySpace

log = logging.getLogger("plakar_azblob")

# Names per range, in pages: a little under one, so that a range is most often
# listed by one request (its first, with startFrom) and every request in flight
# is the first of its range. Ranges of two pages were listed one page after the
# other, each first page held while its second came: the window filled with
# pages waiting for their range's turn, and fewer requests were in flight.
RANGE_PAGES = 0.9
# Pages fetched and not yet used, at most (a 5000-blob page with properties and
# metadata is about 4 MB of XML): the memory bound, whatever the concurrency.
MAX_WINDOW = 24
WINDOW_SLACK = 4


@dataclass(frozen=True)
class PageInfo:
    """What the scheduler needs of a page: its first and last names, how many, the marker."""

    first: str | None
    last: str | None
    count: int
    marker: str | None
    names: tuple[str, ...] = ()  # every name, on the listing's first page only (the alphabet)


P = TypeVar("P")


@dataclass(frozen=True)
class Slice(Generic[P]):
    """A fetched page and the part of it that belongs to the listing: names
    ``>= start`` (None: all) and ``< stop`` (None: all)."""

    page: P
    info: PageInfo
    start: str | None
    stop: str | None

    def keeps(self, name: str) -> bool:
        return (self.start is None or name >= self.start) and \
            (self.stop is None or name < self.stop)

    @property
    def whole(self) -> bool:
        """Every name of the page is kept (no comparison needed)."""
        info = self.info
        return info.first is None or info.last is None or \
            (self.keeps(info.first) and self.keeps(info.last))


@dataclass(eq=False)
class _Range(Generic[P]):
    start: str | None  # startFrom of its first request (None: the listing's beginning)
    stop: str | None   # the first name that belongs to the next range (None: no next range)
    marker: str | None = None
    started: bool = False  # its first page has come
    fetching: bool = False
    exhausted: bool = False  # the service has nothing after its last page
    last: str | None = None  # the last name fetched
    density: float | None = None  # names per key-space unit on its last page
    pages: deque[tuple[P, PageInfo]] = field(default_factory=deque)
    error: BaseException | None = None

    @property
    def lower(self) -> str | None:
        return self.last if self.last is not None else self.start

    @property
    def finished(self) -> bool:
        """Nothing more to fetch for it."""
        return self.exhausted or (self.stop is not None and self.last is not None and
                                  self.last >= self.stop)


def unsupported(exc: BaseException) -> bool:
    """An answer that says ``startFrom`` is not understood (rather than a failure)."""
    return isinstance(exc, HttpResponseError) and exc.status_code in (400, 501)


class KeyRanges(Generic[P]):
    """The pages of one listing, as :class:`Slice` in name order (iterate once).

    ``fetch(marker, start_from)`` asks for one page (of the names under
    ``prefix``, after ``marker`` or from ``start_from``); ``scan(page, first)``
    reads what the scheduling needs of it (with every name if ``first``: the
    listing's first page gives the alphabet of the key space)."""

    def __init__(self, prefix: str, fetch: Callable[[str | None, str | None], P],
                 scan: Callable[[P, bool], PageInfo], concurrency: int,
                 window: int | None = None) -> None:
        self._prefix = prefix
        self._fetch_page = fetch
        self._scan = scan
        self._concurrency = max(1, concurrency)
        # Pages of the ranges after the one being used wait for its turn: room for
        # `concurrency` requests in flight, and a few pages come ahead of their turn.
        self._window = window or min(self._concurrency + WINDOW_SLACK, MAX_WINDOW)
        self._ranges: deque[_Range[P]] = deque([_Range(start=None, stop=None)])
        self._cond = threading.Condition()
        self._in_flight = 0
        self._buffered = 0
        self._closed = False
        # None: not known yet; learnt from the first range listed with startFrom.
        self._start_from: bool | None = None if self._concurrency > 1 else False
        self._space: KeySpace | None = None
        self._density: float | None = None  # of the page furthest in the name space
        self._furthest: str | None = None
        self._page_size = 0
        self._pool = ThreadPoolExecutor(max_workers=self._concurrency,
                                        thread_name_prefix="listing")
        self.requests = 0

    def __iter__(self) -> Iterator[Slice[P]]:
        try:
            with self._cond:
                self._schedule()
            while True:
                with self._cond:
                    taken = self._take()
                if taken is None:
                    return
                yield taken
        finally:
            self.close()

    @property
    def held(self) -> int:
        """Pages fetched and not yet handed out."""
        with self._cond:
            return self._buffered

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._ranges.clear()
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the consumer's side (under the lock) --

    def _take(self) -> Slice[P] | None:
        """The next slice to hand out, waiting for it; None at the end."""
        while True:
            if not self._ranges:
                return None
            head = self._ranges[0]
            if head.pages and not self._held(head):
                page, info = head.pages.popleft()
                self._buffered -= 1
                self._schedule()
                return Slice(page, info, head.start, head.stop)
            if not head.pages and head.error is not None:
                raise head.error
            if not head.pages and head.finished and not head.fetching:
                self._ranges.popleft()
                self._schedule()
                continue
            self._cond.wait()

    def _held(self, head: _Range[P]) -> bool:
        """Whether the head's next page must wait: it reaches past the head's end while
        the next range is the first to try startFrom (if the service ignores it, the
        head goes on to the end and needs that page whole)."""
        if self._start_from is not None or head.stop is None:
            return False
        last = head.pages[0][1].last
        return last is not None and last >= head.stop and len(self._ranges) > 1 and \
            not self._ranges[1].started and self._ranges[1].error is None

    # -- the fetchers' side --

    def _schedule(self) -> None:
        """Start fetches while there is room (called with the lock held)."""
        while not self._closed and self._in_flight < self._concurrency:
            r = self._next_fetch()
            if r is None and self._split():
                continue
            if r is None:
                return
            r.fetching = True
            self._in_flight += 1
            self.requests += 1
            first = not r.started
            self._pool.submit(self._fetch, r, None if first else r.marker,
                              r.start if first else None, r.lower)

    def _next_fetch(self) -> _Range[P] | None:
        """The earliest range that can take a request, within the window (the range
        being used always can, so that it never waits on pages of later ones)."""
        # Pages of later ranges do not hold back an earlier one: its pages are
        # used first. (They exist only when a range was cut after they came.)
        ahead = self._in_flight
        for i, r in enumerate(self._ranges):
            ahead += len(r.pages)
            if r.fetching or r.finished or r.error is not None:
                continue
            if ahead < self._window or (i == 0 and not r.pages):
                return r
            return None
        return None

    def _split(self) -> bool:
        """Cut the earliest range that is long enough to be worth it; False if none."""
        if self._start_from is False or self._space is None or not self._page_size:
            return False
        if self._buffered + self._in_flight >= self._window:
            return False
        names = max(1, round(RANGE_PAGES * self._page_size))
        for i, r in enumerate(self._ranges):
            lower = r.lower
            if r.finished or r.error is not None or lower is None:
                continue
            density = r.density or self._density
            if density is None:
                continue
            # Only a range with more than about 1.5 ranges' worth of names left.
            if self._space.cut(lower, r.stop, names + names // 2, density) is None:
                continue
            cut = self._space.cut(lower, r.stop, names, density)
            if cut is None:
                continue
            self._ranges.insert(i + 1, _Range(start=cut, stop=r.stop))
            r.stop = cut
            return True
        return False

    def _fetch(self, r: _Range[P], marker: str | None, start: str | None,
               lower: str | None) -> None:
        try:
            page = self._fetch_page(marker, start)
            info = self._scan(page, self._space is None and r.start is None and marker is None)
        except BaseException as exc:  # handed to the consumer, in order
            with self._cond:
                self._fetched_error(r, start, exc)
            return
        with self._cond:
            self._in_flight -= 1
            r.fetching = False
            if self._closed or r not in self._ranges:
                return  # closed, or a range dropped since (startFrom not taken)
            if start is not None and self._start_from is None:
                if info.first is not None and info.first < start:
                    self._no_start_from(r, "names before startFrom came back: it is ignored")
                    return
                self._start_from = True
            r.started = True
            r.marker = info.marker
            r.exhausted = info.marker is None
            r.pages.append((page, info))
            self._buffered += 1
            self._learn(r, info, lower)
            self._schedule()
            self._cond.notify_all()

    def _fetched_error(self, r: _Range[P], start: str | None, exc: BaseException) -> None:
        self._in_flight -= 1
        r.fetching = False
        if self._closed or r not in self._ranges:
            return
        if start is not None and self._start_from is None and unsupported(exc):
            self._no_start_from(r, f"HTTP {getattr(exc, 'status_code', '?')}")
            return
        r.error = exc
        self._cond.notify_all()

    def _no_start_from(self, r: _Range[P], why: str) -> None:
        """``r`` was listed with startFrom, which the service does not take: the first
        range (from the listing's beginning, by markers, held at its end until then:
        see _held) goes on to the end instead, the others are dropped."""
        log.info("listing %r one page after another: the service does not take "
                 "startFrom (%s)", self._prefix, why)
        self._start_from = False
        while len(self._ranges) > 1:
            self._ranges.pop()
        first = self._ranges[0]
        assert first.start is None, "a range listed with startFrom was used before it was known"
        first.stop = None
        self._schedule()
        self._cond.notify_all()

    def _learn(self, r: _Range[P], info: PageInfo, lower: str | None) -> None:
        """What a page tells of the name space: its alphabet (first page), the density."""
        if info.last is not None:
            r.last = info.last
        self._page_size = max(self._page_size, info.count)
        if self._space is None:
            if info.marker is None or not info.names:
                return  # one page: nothing to split
            self._space = KeySpace(self._prefix, info.names)
        if info.first is None or info.last is None:
            return
        density = self._space.density(lower or info.first, info.last, info.count)
        if density is None:
            return
        r.density = density
        if self._furthest is None or info.last > self._furthest:
            self._furthest, self._density = info.last, density
