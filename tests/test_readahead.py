"""Reading records ahead of plakar's Opens (kloset_sdk._services.readahead), without a network."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from kloset_sdk import Importer, Options, ReadAheadSettings, Record
from kloset_sdk._proto import connectors_pb2 as cpb
from kloset_sdk._proto import importer_pb2 as ipb
from kloset_sdk._services.importer import ImporterService
from kloset_sdk._services.readahead import Openers

KiB = 1024
SETTINGS = ReadAheadSettings(max_size=64 * KiB, budget=256 * KiB, depth=8, workers=4)


class Source:
    """Openers that count their calls and track the bytes held by reads in flight."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.delay = delay
        self.lock = threading.Lock()
        self.failing: set[str] = set()

    def content(self, key: str, size: int) -> bytes:
        return (key.encode() * (size // max(1, len(key)) + 1))[:size]

    def opener(self, key: str, size: int) -> Any:
        def read() -> list[bytes]:
            with self.lock:
                self.calls[key] += 1
                failing = key in self.failing
            time.sleep(self.delay)
            if failing:
                raise OSError(f"cannot read {key}")
            return [self.content(key, size)]
        return read


def content_of(opener: Any) -> bytes:
    return b"".join(opener())


def fill(openers: Openers, source: Source, sizes: list[int]) -> list[str]:
    keys = [f"/f{i:04d}" for i in range(len(sizes))]
    for key, size in zip(keys, sizes, strict=True):
        openers.add(key, size, source.opener(key, size))
    return keys


def test_opening_in_a_row_reads_the_next_records_ahead_once() -> None:
    openers, source = Openers(SETTINGS), Source(delay=0.002)
    keys = fill(openers, source, [4 * KiB] * 40)
    for key in keys:
        opener = openers.open(key)
        assert opener is not None
        assert content_of(opener) == source.content(key, 4 * KiB)
        openers.acknowledged(key)
    assert openers.opened == 40
    assert openers.read_ahead >= 35  # all but the first two (the depth grows from 0)
    assert all(n == 1 for n in source.calls.values())  # never read twice
    assert sorted(source.calls) == keys


def test_a_skipped_record_stops_reading_ahead() -> None:
    """An incremental backup: plakar acknowledges unchanged files without opening them."""
    openers, source = Openers(SETTINGS), Source()
    keys = fill(openers, source, [KiB] * 100)
    for key in keys:
        openers.acknowledged(key)
    assert source.calls == Counter() and openers.read_ahead == 0
    # Scattered changes: a lone Open reads nothing ahead.
    keys = fill(openers, source, [KiB] * 100)
    for i, key in enumerate(keys):
        if i % 10 == 0:
            opener = openers.open(key)
            assert opener is not None
            content_of(opener)
        openers.acknowledged(key)
    assert openers.read_ahead == 0
    assert sum(source.calls.values()) == 10


def test_reads_not_started_are_cancelled_at_a_skip() -> None:
    openers, source = Openers(SETTINGS), Source(delay=0.05)
    keys = fill(openers, source, [KiB] * 30)
    for key in keys[:3]:
        opener = openers.open(key)
        assert opener is not None
        content_of(opener)
        openers.acknowledged(key)
    started = openers.read_ahead
    assert started > 0
    openers.acknowledged(keys[3])  # plakar skips one: the rest is not read
    time.sleep(0.3)
    read = sum(source.calls.values())
    assert read <= 3 + SETTINGS.workers + 1  # at most what was already running
    for key in keys[4:]:
        openers.acknowledged(key)
    time.sleep(0.1)
    assert sum(source.calls.values()) == read


def test_skips_cost_the_reads_in_flight_not_the_backlog() -> None:
    """plakar lags behind a long listing by up to the wire's windows (tens of thousands
    of records): each skip used to walk every record not yet acknowledged, so an
    incremental backup of N unchanged blobs cost O(N^2) (14 s of CPU for 20 000)."""
    openers, source = Openers(SETTINGS), Source()
    keys = fill(openers, source, [KiB] * 40_000)
    start = time.process_time()
    for key in keys:
        openers.acknowledged(key)
    assert time.process_time() - start < 2.0  # ~0.1 s; walking the backlog took 10 s
    assert source.calls == Counter()


def test_memory_stays_within_the_budget() -> None:
    settings = ReadAheadSettings(max_size=64 * KiB, budget=128 * KiB, depth=32, workers=8)
    openers, source = Openers(settings), Source(delay=0.01)
    keys = fill(openers, source, [60 * KiB] * 30)
    peak = 0
    for key in keys:
        opener = openers.open(key)
        peak = max(peak, openers._held)
        assert opener is not None
        assert content_of(opener) == source.content(key, 60 * KiB)
        openers.acknowledged(key)
        peak = max(peak, openers._held)
    assert 0 < peak <= settings.budget
    assert openers._held == 0


def test_large_records_and_xattrs_are_never_read_ahead() -> None:
    openers, source = Openers(SETTINGS), Source()
    keys = fill(openers, source, [KiB, KiB, 1024 * KiB, KiB, 1024 * KiB])
    openers.add("xattr:/f0000:user.x", None, source.opener("xattr", 3))
    for key in keys:
        opener = openers.open(key)
        assert opener is not None
        content_of(opener)
        openers.acknowledged(key)
        # An extended attribute acknowledged without an Open (-no-xattr) is not a
        # sign that plakar skips files.
        openers.acknowledged("xattr:/f0000:user.x")
    assert source.calls["xattr"] == 0
    assert source.calls["/f0002"] == 1 and source.calls["/f0004"] == 1
    assert openers.read_ahead == 1  # only /f0003 (depth 2 after the second Open)


def test_opened_xattrs_do_not_make_a_run() -> None:
    """A changed file and its extended attribute, opened one after the other, are not
    two files in a row: the file after them is not read ahead."""
    openers, source = Openers(SETTINGS), Source()
    keys = fill(openers, source, [KiB] * 4)
    openers.add("xattr:/f0001:user.x", None, source.opener("xattr", 3))
    openers.acknowledged(keys[0])  # unchanged: skipped
    for key in (keys[1], "xattr:/f0001:user.x"):
        opener = openers.open(key)
        assert opener is not None
        content_of(opener)
        openers.acknowledged(key)
    assert openers.read_ahead == 0
    openers.acknowledged(keys[2])
    openers.acknowledged(keys[3])
    assert source.calls[keys[2]] == 0 and source.calls[keys[3]] == 0


def test_a_failed_read_ahead_is_done_again_at_open() -> None:
    openers, source = Openers(SETTINGS), Source()
    keys = fill(openers, source, [KiB] * 6)
    source.failing.add(keys[3])
    for key in keys[:3]:
        opener = openers.open(key)
        assert opener is not None
        content_of(opener)
        openers.acknowledged(key)
    time.sleep(0.05)
    opener = openers.open(keys[3])
    assert opener is not None
    source.failing.clear()
    assert content_of(opener) == source.content(keys[3], KiB)  # read again, now fine
    assert source.calls[keys[3]] == 2


def test_unknown_and_acknowledged_keys_do_not_open() -> None:
    openers, source = Openers(SETTINGS), Source()
    [key] = fill(openers, source, [KiB])
    assert openers.open("/nope") is None
    openers.acknowledged(key)
    assert openers.open(key) is None


# -- through the importer's gRPC servicer, as plakar drives it --

class Blobs(Importer):
    type = "test"
    read_ahead = SETTINGS
    source = Source(delay=0.001)

    def __init__(self, proto: str, config: dict[str, str], options: Options) -> None:
        super().__init__(proto, config, options)
        self.count = int(config["count"])

    def scan(self) -> Iterator[Record]:
        now = datetime.now(timezone.utc)
        yield Record.directory("/", mod_time=now)
        for i in range(self.count):
            path = f"/b{i:04d}"
            yield Record.file(path, size=KiB, mod_time=now, opener=self.source.opener(path, KiB))


class _Context:
    def is_active(self) -> bool:
        return True

    def abort(self, code: Any, message: str) -> None:
        raise AssertionError(message)


def drive(count: int, open_files: bool) -> tuple[ImporterService, dict[str, bytes]]:
    Blobs.source = Source(delay=0.001)
    service = ImporterService(Blobs)
    service.Init(ipb.InitRequest(proto="test", config={"count": str(count)}), _Context())
    acks: queue.Queue[ipb.ImportRequest | None] = queue.Queue()

    def requests() -> Iterator[ipb.ImportRequest]:
        while (item := acks.get()) is not None:
            yield item

    records = []
    for response in service.Import(requests(), _Context()):
        if response.finished:
            break
        records.append(response.record)
    received = {}
    for record in records:
        if open_files and record.hasReader:
            received[record.pathname] = b"".join(
                message[3:] for message in service.open_encoded(
                    ipb.OpenRequest(record=record), _Context()))
        acks.put(ipb.ImportRequest(result=cpb.Result(header=record)))
    acks.put(None)
    return service, received


def test_a_first_backup_gets_every_record_read_ahead_and_intact() -> None:
    service, received = drive(200, open_files=True)
    source = Blobs.source
    assert received == {k: source.content(k, KiB) for k in source.calls}
    assert len(received) == 200 and all(n == 1 for n in source.calls.values())
    assert service._openers.read_ahead >= 195


def test_an_unchanged_incremental_reads_nothing() -> None:
    service, _ = drive(200, open_files=False)
    time.sleep(0.05)
    assert Blobs.source.calls == Counter()
    assert service._openers.read_ahead == 0
