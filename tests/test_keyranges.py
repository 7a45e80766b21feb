"""Key ranges listed in parallel give exactly what one sequential listing gives.

A fake List Blobs service (pages in Azure's XML, markers, ``startFrom``,
``maxresults``), small pages so that a few hundred names make many ranges,
every shape of names; then faults: a service that refuses or ignores
``startFrom``, a page that fails, names created and deleted while listing.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from xml.sax.saxutils import escape

import pytest
from azure.core.exceptions import HttpResponseError

from plakar_azblob.transfer.direct import Page
from plakar_azblob.transfer.keyranges import KeyRanges
from plakar_azblob.transfer.keyspace import KeySpace
from plakar_azblob.transfer.listing import list_blobs, list_names, scan_page


def blob_xml(name: str) -> str:
    return (f"<Blob><Name>{escape(name)}</Name><Properties>"
            "<Last-Modified>Sat, 05 Dec 2026 07:22:35 GMT</Last-Modified>"
            "<Etag>0x1</Etag><Content-Length>1</Content-Length>"
            "<BlobType>BlockBlob</BlobType></Properties>"
            "<Metadata><Blob>v</Blob><Name>meta</Name></Metadata></Blob>")


class FakeService:
    """Sorted names answered as List Blobs pages of ``page_size``; thread-safe."""

    def __init__(self, names: list[str], page_size: int, *, start_from: str = "ok",
                 delay: float = 0.0) -> None:
        self.names = sorted(set(names))
        self.page_size = page_size
        self.start_from = start_from  # ok, refuse (400) or ignore
        self.delay = delay
        self.lock = threading.Lock()
        self.requests: list[tuple[str | None, str | None]] = []
        self.fail: Callable[[str | None, str | None, int], bool] = lambda m, s, n: False
        self.on_request: Callable[[int], None] = lambda n: None

    def list_page(self, prefix: str | None, marker: str | None, page_size: int | None = None,
                  metadata: bool = True, start_from: str | None = None) -> Page:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            n = len(self.requests)
            self.requests.append((marker, start_from))
            self.on_request(n)
            if self.fail(marker, start_from, n):
                raise HttpResponseError(message="ServerBusy", response=None)
            if start_from is not None and self.start_from == "refuse":
                err = HttpResponseError(message="InvalidQueryParameterValue")
                err.status_code = 400
                raise err
            names = [x for x in self.names if x.startswith(prefix or "")]
            at = 0
            if marker is not None:
                at = bisect_left(names, marker)
            elif start_from is not None and self.start_from == "ok":
                at = bisect_left(names, start_from)
            chunk = names[at:at + self.page_size]
            more = names[at + self.page_size:at + self.page_size + 1]
        body = ('<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs>'
                + "".join(blob_xml(x) for x in chunk) + "</Blobs>"
                + (f"<NextMarker>{escape(more[0])}</NextMarker>" if more else "<NextMarker/>")
                + "</EnumerationResults>")
        return Page(body.encode(), 200, "application/xml")

    def close(self) -> None:
        pass


def listed(service: FakeService, prefix: str | None = None, concurrency: int = 4) -> list[str]:
    return [b.name for b in list_blobs(None, service, prefix,  # type: ignore[arg-type]
                                       concurrency=concurrency)]


def hierarchical(n: int) -> list[str]:
    return [f"d{i // 50:05d}/f{i:06d}" for i in range(n)]


def hexes(n: int) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest()[:20] for i in range(n)]


def dated(n: int) -> list[str]:
    return [f"2026/{1 + i % 12:02d}/{1 + i % 28:02d}/backup-{i:05d}.tar" for i in range(n)]


def huge_prefix(n: int) -> list[str]:
    return [f"only/one/prefix/{i:07d}" for i in range(n)]


def awkward(n: int) -> list[str]:
    """Multi-byte characters, names that are prefixes of others, '/' everywhere."""
    rng = random.Random(7)
    alphabet = ["a", "b", "/", "é", "z", "日", "0", "~", "€", " ", "-", "\U0001f600"]
    names = {"a", "a/", "a/b", "ab", "é", "éé", "日本"}
    while len(names) < n:
        names.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))))
    return sorted(names)


SHAPES = {"hierarchical": hierarchical, "hex": hexes, "dated": dated,
          "huge_prefix": huge_prefix, "awkward": awkward}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("concurrency", [1, 2, 4, 16])
def test_same_names_same_order_as_one_sequential_listing(shape: str, concurrency: int) -> None:
    names = SHAPES[shape](700)
    service = FakeService(names, page_size=13)
    assert listed(service, concurrency=concurrency) == sorted(set(names))
    starts = [s for _, s in service.requests if s is not None]
    if concurrency > 1:
        assert len(starts) >= 5, "the listing was not cut into ranges"
    else:
        assert not starts
    # Ranges cost about one request more each (more, and shorter ones, when many
    # are in flight), never a listing several times over.
    pages = len(set(names)) / 13 + 1
    assert len(service.requests) <= (2.5 if concurrency <= 4 else 3.5) * pages


@pytest.mark.parametrize("shape", SHAPES)
def test_a_prefix_listing_is_cut_inside_the_prefix(shape: str) -> None:
    names = [*SHAPES[shape](500), "zz-outside", "0-outside"]
    prefix = sorted(names)[100][:2]
    service = FakeService(names, page_size=9)
    assert listed(service, prefix) == sorted(x for x in set(names) if x.startswith(prefix))


def test_one_page_needs_no_range_and_no_thread_beyond_its_fetch() -> None:
    service = FakeService(hexes(30), page_size=100)
    assert listed(service) == sorted(hexes(30))
    assert service.requests == [(None, None)]


def test_empty_listing() -> None:
    service = FakeService([], page_size=10)
    assert listed(service) == []


def test_names_listing_of_the_store_is_cut_too() -> None:
    names = [f"packfiles/{h[:2]}/{h}" for h in hexes(400)]
    service = FakeService(names, page_size=11)
    got = list(list_names(None, service, "packfiles/", concurrency=4))  # type: ignore[arg-type]
    assert got == sorted(names)
    assert any(s is not None for _, s in service.requests)


@pytest.mark.parametrize("how", ["refuse", "ignore"])
def test_a_service_without_start_from_is_listed_sequentially(
        how: str, caplog: pytest.LogCaptureFixture) -> None:
    names = hierarchical(600)
    service = FakeService(names, page_size=17, start_from=how)
    with caplog.at_level("INFO", logger="plakar_azblob"):
        assert listed(service) == sorted(names)
    said = [r.getMessage() for r in caplog.records if "startFrom" in r.getMessage()]
    assert len(said) == 1 and "one page after another" in said[0]
    # Tried by the ranges of the first round only (at most one request in flight
    # for each of the 4), then markers only.
    assert 1 <= sum(1 for _, s in service.requests if s is not None) <= 4


def test_a_failed_page_fails_the_listing_after_everything_before_it() -> None:
    names = hexes(500)
    service = FakeService(names, page_size=10)
    failing: dict[str, str] = {}

    def fail(marker: str | None, start: str | None, n: int) -> bool:
        # The third range's first page fails every time (after the pipeline's retries).
        starts = sorted({s for _, s in service.requests if s is not None})
        if start is not None and len(starts) >= 3 and start == starts[2]:
            failing["start"] = start
            return True
        return False

    service.fail = fail
    got: list[str] = []
    with pytest.raises(HttpResponseError):
        for blob in list_blobs(None, service, None, concurrency=4):  # type: ignore[arg-type]
            got.append(blob.name)
    # Everything before the failed range came, in order, nothing after it.
    assert got == sorted(names)[:len(got)]
    assert got and got[-1] < failing["start"] <= sorted(names)[len(got)]


def test_names_changing_while_listed_come_at_most_once() -> None:
    base = hexes(800)
    rng = random.Random(3)
    service = FakeService(base, page_size=15, delay=0.001)
    added: set[str] = set()
    removed: set[str] = set()

    def change(n: int) -> None:
        for _ in range(3):
            name = hashlib.md5(str(rng.random()).encode()).hexdigest()[:20]
            service.names.insert(bisect_left(service.names, name), name)
            added.add(name)
            victim = service.names[rng.randrange(len(service.names))]
            if victim not in added:
                service.names.remove(victim)
                removed.add(victim)

    service.on_request = change
    got = listed(service, concurrency=6)
    assert got == sorted(set(got)), "out of order or repeated"
    assert set(base) - removed <= set(got), "a name present throughout was missed"
    assert set(got) <= set(base) | added


def test_scan_reads_first_last_count_and_marker_like_the_parser() -> None:
    service = FakeService(["a&b", "x<y", "Blob", "c d", "é"], page_size=3)
    info = scan_page(service.list_page(None, None), True)
    assert (info.first, info.last, info.count, info.marker) == ("Blob", "c d", 3, "x<y")
    assert info.names == ("Blob", "a&b", "c d")


def test_memory_is_bounded_by_the_window_whatever_the_listing() -> None:
    """Pages fetched and not used never exceed the window (plus those in flight)."""
    service = FakeService(hexes(3000), page_size=10)
    pages = KeyRanges("", lambda m, s: service.list_page(None, m, start_from=s),
                      scan_page, concurrency=4, window=6)
    seen = 0
    for _ in pages:
        seen += 1
        time.sleep(0.002)  # a slow consumer: fetchers run ahead as far as allowed
        assert pages.held <= 6 + 4
    assert seen >= 300


@pytest.mark.parametrize("shape", SHAPES)
def test_keyspace_cuts_between_and_in_order(shape: str) -> None:
    names = sorted(set(SHAPES[shape](400)))
    space = KeySpace("", names[:50])
    positions = [space.position(n) for n in names]
    assert positions == sorted(positions)
    density = space.density(names[0], names[49], 50) or 1e-30
    lower = names[10]
    cut = space.cut(lower, None, 20, density)
    if cut is not None:
        assert cut > lower


def test_iterating_stops_the_fetchers() -> None:
    service = FakeService(hexes(2000), page_size=10, delay=0.01)
    it: Iterator[str] = iter(listed_lazily(service))
    for _ in range(25):
        next(it)
    it.close()  # type: ignore[attr-defined]
    time.sleep(0.1)
    count = len(service.requests)
    time.sleep(0.2)
    assert len(service.requests) == count
    assert not [t for t in threading.enumerate() if t.name.startswith("listing")
                and t.is_alive() and count > 1000]


def listed_lazily(service: FakeService) -> Iterator[str]:
    for blob in list_blobs(None, service, None, concurrency=4):  # type: ignore[arg-type]
        yield blob.name
