"""A seeded HTTP/2 frame fuzzer for the SDK's server, over a connector's stdio.

Each case is one seed: a connector (tests/pydir_connector.py, importer or
storage, on folders prepared once) is spawned on a socket pair
(tests/h2client.py) and sent a gRPC conversation as plakar holds it:
importer Init, Import with its acknowledgements, Opens; store Init, Open,
Put streams, Gets (whole and ranged), List, Size, Delete; some calls
cancelled midway. The streams' frames are interleaved, header blocks split
into CONTINUATIONs, some frames padded; then frames are mutated (bits,
flags, types, stream ids, sizes, dropped, repeated) and random frames mixed
in (SETTINGS, WINDOW_UPDATE, PING, PRIORITY, RST_STREAM, GOAWAY, unknown
types, malformed header lists, oversized frames). Some cases announce huge
windows and frame sizes and stop reading for a moment while large objects
are read, or send huge header lists. The client then behaves: it gives
windows back, asks for a PING, and closes.

Asserted for every case:
- it never hangs: it answers the PING and ends every stream the client
  ended (or closes its output after a GOAWAY) within ``BOUND`` seconds,
  and exits, with status 0, within ``BOUND`` once its input ends;
- nothing is written after its GOAWAY;
- no traceback: its stderr holds only the one line naming the GOAWAY's
  error (exactly one, with the GOAWAY's code) and one line per stream it
  reset for an error (each RST_STREAM with an error code has its line);
- its memory stays bounded: peak RSS under ``MAX_RSS``.

    python tests/h2fuzz.py [--seconds N] [--cases N] [--first SEED]
    python tests/h2fuzz.py --seed SEED        # replays one case, verbosely

A failing case prints its seed and the command that replays it.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import re
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from h2client import RawClient, grpc_message, settings, window_update
from hpack import Encoder

from kloset_sdk._proto import connectors_pb2 as cpb
from kloset_sdk._proto import importer_pb2 as ipb
from kloset_sdk._proto import store_pb2 as spb
from kloset_sdk._wire.h2state import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PRIORITY,
    PRIORITY_FLAG,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    error_name,
)
from kloset_sdk._wire.h2state import frame as encode_frame
from kloset_sdk._wire.http2 import header_block

HERE = Path(__file__).resolve().parent
CONNECTOR = [sys.executable, str(HERE / "pydir_connector.py")]
BOUND = 15.0  # seconds to answer, or to exit once the input ends
MAX_RSS = 200 << 10  # KiB of peak memory
BIG = 6 << 20  # bytes of the large object Gets read
FILES = 24
ERROR_CODES = (1, 3, 5, 6, 11)  # those whose RST_STREAM is logged: protocol, flow, closed, size
CANCEL = 8
_LINE = re.compile(r"kloset_sdk: WARNING: HTTP/2 (?:connection error ([A-Z_0-9]+|error 0x[0-9a-f]+)"
                   r"|stream (\d+) reset \(([A-Z_0-9]+)\)): \S.*")


@dataclass
class Frame:
    kind: int
    flags: int
    stream: int
    payload: bytes
    oversized: int = 0  # a length field above the maximum (the payload is not sent)

    def encode(self) -> bytes:
        if self.oversized:
            return struct.pack(">IBI", self.oversized << 8 | self.kind, self.flags, self.stream)
        return encode_frame(self.kind, self.flags, self.stream, self.payload)


Unit = list[Frame]  # frames sent together (a header block stays whole)


@dataclass
class Fixture:
    """The folders the connectors serve, prepared once per run."""

    source: Path
    files: list[str]  # pathnames the importer lists with content
    store: Path
    big_mac: bytes


def prepare(root: Path) -> Fixture:
    rng = random.Random(0)
    source = root / "source"
    (source / "sub").mkdir(parents=True)
    files = []
    for i in range(FILES):
        path = source / ("sub" if i % 3 else ".") / f"f{i:02}.bin"
        path.write_bytes(rng.randbytes(rng.choice((0, 10, 3000, 70_000))))
        files.append(str(path))
    (source / "large.bin").write_bytes(rng.randbytes(3 << 20))
    files.append(str(source / "large.bin"))
    store = root / "store"
    (store / "packfile").mkdir(parents=True)
    (store / "CONFIG").write_bytes(b"config")
    big_mac = hashlib.sha256(b"big").digest()
    (store / "packfile" / big_mac.hex()).write_bytes(rng.randbytes(BIG))
    return Fixture(source, files, store, big_mac)


@dataclass
class Conversation:
    """A case's streams, as frame units per stream, before interleaving."""

    rng: random.Random
    encoder: Encoder | None  # None: header blocks are literals (no table to keep in step)
    streams: list[list[Unit]] = field(default_factory=list)
    next_id: int = 1

    def _header_block(self, headers: list[tuple[str, str]]) -> bytes:
        if self.encoder is not None:
            return bytes(self.encoder.encode(headers))
        return header_block(headers)

    def headers_unit(self, stream: int, block: bytes, flags: int) -> Unit:
        """HEADERS (padded or with a priority, sometimes), then CONTINUATIONs."""
        rng = self.rng
        cut = [0, *sorted(rng.sample(range(1, len(block)), min(len(block) - 1, rng.choice(
            (0, 0, 0, 1, 2, 5))))), len(block)] if len(block) > 1 else [0, len(block)]
        unit = []
        for i, (a, b) in enumerate(itertools.pairwise(cut)):
            piece = block[a:b]
            last = END_HEADERS if i == len(cut) - 2 else 0
            if i == 0:
                extra = 0
                if rng.random() < 0.2:
                    extra |= PRIORITY_FLAG
                    piece = struct.pack(">IB", rng.choice((0, stream - 2 if stream > 2 else 0)),
                                        rng.randrange(256)) + piece
                if rng.random() < 0.2:
                    pad = rng.randrange(20)
                    extra |= PADDED
                    piece = bytes([pad]) + piece + bytes(pad)
                unit.append(Frame(HEADERS, flags | extra | last, stream, piece))
            else:
                unit.append(Frame(CONTINUATION, last, stream, piece))
        return unit

    def call(self, path: str, messages: list[bytes], end: bool = True,
             cancel: bool = False) -> int:
        """One call's frames: headers, its messages in DATA frames of any size, the end."""
        rng = self.rng
        stream, self.next_id = self.next_id, self.next_id + 2
        block = self._header_block([
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "localhost"), ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.78.0"), ("te", "trailers")])
        units = [self.headers_unit(stream, block, 0)]
        body = b"".join(grpc_message(m) for m in messages)
        at = 0
        while at < len(body):
            n = min(len(body) - at, rng.choice((1, 7, 100, 4096, 16_384, 16_384)))
            piece = body[at:at + n]
            if rng.random() < 0.1 and n < 16_000:
                pad = rng.randrange(min(255, 16_383 - n))
                units.append([Frame(DATA, PADDED, stream, bytes([pad]) + piece + bytes(pad))])
            else:
                units.append([Frame(DATA, 0, stream, piece)])
            at += n
        if cancel:
            keep = rng.randrange(1, len(units) + 1)
            units = [*units[:keep], [Frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL))]]
        elif end:
            last = units[-1][-1]
            if last.kind == DATA and rng.random() < 0.7:
                last.flags |= END_STREAM
            else:
                units.append([Frame(DATA, END_STREAM, stream, b"")])
        self.streams.append(units)
        return stream

    def interleave(self) -> list[Unit]:
        """The streams' units mixed, each stream's in order, streams opened in id order."""
        rng = self.rng
        queues = [list(s) for s in self.streams]
        opened = 0
        out: list[Unit] = []
        while any(queues):
            ready = [i for i in range(min(opened + 1, len(queues))) if queues[i]]
            i = rng.choice(ready)
            out.append(queues[i].pop(0))
            if i == opened:
                opened += 1
        return out


def _importer(conv: Conversation, fx: Fixture) -> None:
    rng = conv.rng
    conv.call("/importer.Importer/Ping", [b""])
    paths = [str(fx.source), *fx.files]
    acks = [ipb.ImportRequest(result=cpb.Result(header=cpb.Record(pathname=p)))
            .SerializeToString() for p in rng.sample(paths, rng.randrange(len(paths)))]
    conv.call("/importer.Importer/Import", acks, cancel=rng.random() < 0.15)
    for path in rng.sample(fx.files, rng.randrange(1, 8)):
        conv.call("/importer.Importer/Open", [ipb.OpenRequest(
            record=cpb.Record(pathname=path)).SerializeToString()], cancel=rng.random() < 0.15)
    if rng.random() < 0.3:
        conv.call("/importer.Importer/Close", [b""])


def _storage(conv: Conversation, fx: Fixture, seed: int, greedy: bool) -> None:
    rng = conv.rng
    packfile = spb.STORAGE_RESOURCE_PACKFILE
    for _ in range(rng.randrange(1, 4)):
        conv.call(rng.choice(("/store.Store/Open", "/store.Store/Ping", "/store.Store/Mode",
                              "/store.Store/Size")), [b""])
    for k in range(rng.randrange(0, 4)):
        mac = hashlib.sha256(b"%d/%d" % (seed, k)).digest()
        size = rng.choice((0, 1, 5000, 300_000, 1 << 20))
        data = rng.randbytes(size)
        messages = [spb.PutRequest(mac=mac, type=packfile).SerializeToString()]
        messages += [spb.PutRequest(chunk=data[i:i + rng.choice((1000, 65_536, 1 << 20))])
                     .SerializeToString() for i in range(0, size, 1 << 20)]
        conv.call("/store.Store/Put", messages, cancel=rng.random() < 0.2)
    for _ in range(rng.randrange(1, 9 if greedy else 4)):
        request = spb.GetRequest(mac=fx.big_mac, type=packfile)
        if rng.random() < 0.3:
            request.range.offset = rng.randrange(BIG)
            request.range.length = rng.randrange(BIG - request.range.offset + 1)
        conv.call("/store.Store/Get", [request.SerializeToString()], cancel=rng.random() < 0.2)
    if rng.random() < 0.5:
        conv.call("/store.Store/List", [spb.ListRequest(type=packfile).SerializeToString()])
    if rng.random() < 0.3:
        conv.call("/store.Store/Delete", [spb.DeleteRequest(
            mac=rng.randbytes(32), type=packfile).SerializeToString()])
    if rng.random() < 0.1:
        conv.call("/store.Store/Nope", [b""])


# -- mutations --

def _random_frame(rng: random.Random, streams: list[int]) -> Frame:
    kind = rng.choice((DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, 5, PING, GOAWAY,
                       WINDOW_UPDATE, CONTINUATION, 10, 0xFA))
    sizes = {PRIORITY: 5, RST_STREAM: 4, PING: 8, GOAWAY: 8, WINDOW_UPDATE: 4, SETTINGS: 6}
    size = sizes.get(kind, 8) if rng.random() < 0.7 else rng.randrange(40)
    stream = rng.choice((0, 0, rng.randrange(1, 40), *(streams or [1])))
    flags = rng.choice((0, 0, 1, 4, 5, 8, 0x20, rng.randrange(256)))
    payload = rng.randbytes(size)
    if kind == WINDOW_UPDATE and rng.random() < 0.5:
        payload = struct.pack(">I", rng.choice((0, 1, 65_535, 2**31 - 1)))
    elif kind == SETTINGS and rng.random() < 0.7:
        flags = 0 if rng.random() < 0.9 else 1
        stream = 0
        payload = b"".join(struct.pack(">HI", rng.randrange(1, 9), rng.choice(
            (0, 1, 16_384, 65_535, 1 << 20, 2**24 - 1, 2**31 - 1, 2**32 - 1)))
            for _ in range(rng.randrange(4)))
    return Frame(kind, flags, stream, payload)


def _bad_headers(rng: random.Random, conv: Conversation, stream: int) -> Unit:
    """A request header list that breaks a rule of RFC 9113 section 8 (or is just huge)."""
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/store.Store/Ping"),
               (":authority", "localhost"), ("content-type", "application/grpc")]
    how = rng.randrange(8)
    if how == 0:
        headers.append(("X-Upper", "1"))
    elif how == 1:
        headers.append(("connection", "keep-alive"))
    elif how == 2:
        headers.append(("te", "gzip"))
    elif how == 3:
        headers = [h for h in headers if h[0] != rng.choice((":method", ":path", ":scheme"))]
    elif how == 4:
        headers.append((":method", "GET"))
    elif how == 5:
        headers.insert(0, ("x-first", "1"))
    elif how == 6:
        headers.append(("content-length", "10"))
    else:  # huge: from 100 KiB to past the limit
        headers += [(f"x-big-{i}", "v" * 60_000) for i in range(rng.choice((2, 20)))]
    return conv.headers_unit(stream, conv._header_block(headers), END_STREAM)


def _storm(rng: random.Random, conv: Conversation, greedy: bool, path: str) -> Unit:
    """Many frames at once: what a peer flooding the server sends."""
    how = rng.randrange(4)
    if how == 0:  # PINGs: with the reading paused, more acknowledgements than allowed wait
        return [Frame(PING, 0, 0, rng.randbytes(8)) for _ in range(120_000 if greedy else 2000)]
    first = conv.next_id
    count = rng.choice((50, 300))
    conv.next_id += 2 * count
    # Literals: repeating an indexed block would put the client's table out of step.
    block = header_block([(":method", "POST"), (":scheme", "http"),
                          (":path", path), ("content-type", "application/grpc")])
    if how == 1:  # streams opened and reset at once
        return [f for i in range(count) for f in (
            Frame(HEADERS, END_HEADERS, first + 2 * i, block),
            Frame(RST_STREAM, 0, first + 2 * i, struct.pack(">I", CANCEL)))]
    if how == 2:  # streams opened and left open: beyond 256, refused
        return [Frame(HEADERS, END_HEADERS, first + 2 * i, block) for i in range(count)]
    # DATA past the stream's window (4 MiB), sent without waiting for it: the start
    # of a 15 MiB message, which the server keeps (whole messages only are taken).
    return [Frame(HEADERS, END_HEADERS, first, block),
            Frame(DATA, 0, first, grpc_message(bytes(15 << 20))[:16_384]),
            *(Frame(DATA, 0, first, bytes(16_384)) for _ in range(300))]


def _mutate(rng: random.Random, f: Frame, streams: list[int]) -> list[Frame]:
    how = rng.randrange(9)
    if how == 0 and f.payload:
        payload = bytearray(f.payload)
        payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
        f.payload = bytes(payload)
    elif how == 1:
        f.flags ^= rng.choice((1, 4, 8, 0x20, rng.randrange(256)))
    elif how == 2:
        f.stream = rng.choice((0, f.stream + 2, max(1, f.stream - 2), rng.randrange(1, 50),
                               *streams))
    elif how == 3:
        f.kind = rng.randrange(13)
    elif how == 4:
        f.payload = f.payload[:rng.randrange(len(f.payload) + 1)]
    elif how == 5:
        f.payload += rng.randbytes(rng.randrange(1, 64))
    elif how == 6:
        return [f, Frame(f.kind, f.flags, f.stream, f.payload)]
    elif how == 7:
        return []
    else:
        f.oversized = rng.randrange(16_385, 1 << 24)
    return [f]


@dataclass
class Case:
    seed: int
    kind: str
    units: list[Unit]
    greedy: bool  # huge windows and frame sizes announced, and a pause in reading
    mutation_rate: float
    init: Unit


def make_case(seed: int, fx: Fixture) -> Case:
    rng = random.Random(seed)
    kind = rng.choice(("importer", "storage"))
    greedy = rng.random() < 0.2
    rate = rng.choice((0.0, 0.0, 0.005, 0.02, 0.05, 0.15))
    conv = Conversation(rng, Encoder() if rng.random() < 0.5 else None)
    config = {"location": f"pydir://{fx.source if kind == 'importer' else fx.store}"}
    if kind == "importer":
        init = ipb.InitRequest(proto="pydir", config=config).SerializeToString()
        conv.call("/importer.Importer/Init", [init])
    else:
        init = spb.InitRequest(proto="pydir", config=config).SerializeToString()
        conv.call("/store.Store/Init", [init])
    init_unit = [f for u in conv.streams.pop() for f in u]
    if kind == "importer":
        _importer(conv, fx)
    else:
        _storage(conv, fx, seed, greedy)
    units = conv.interleave()
    streams = list(range(3, conv.next_id, 2))
    out: list[Unit] = []
    if greedy:
        out.append([Frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in (
            (4, 2**31 - 1), (5, 2**24 - 1), (6, 2**32 - 1), (1, 2**32 - 1)))),
            Frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1 - 65_535))])
    for unit in units:
        if rate and rng.random() < rate * 3:
            out.append([_random_frame(rng, streams)])
        if rate and rng.random() < rate / 2:
            out.append(_bad_headers(rng, conv, conv.next_id))
            conv.next_id += 2
        if rate and rng.random() < rate / 4:
            out.append(_storm(rng, conv, greedy, "/store.Store/Put" if kind == "storage"
                              else "/importer.Importer/Import"))
        if rate and len(unit) > 1 and rng.random() < rate * 2:  # inside a header block
            unit.insert(rng.randrange(1, len(unit)), _random_frame(rng, streams))
        if rate:
            unit = [m for f in unit for m in (_mutate(rng, f, streams)
                                              if rng.random() < rate else [f])]
        out.append(unit)
    return Case(seed, kind, out, greedy, rate, init_unit)


# -- running a case --

def _client_ended(units: list[Unit]) -> set[int]:
    """Streams the client ended (END_STREAM on HEADERS or DATA) and did not reset."""
    ended, reset = set(), set()
    for unit in units:
        for f in unit:
            if f.oversized:
                continue
            if f.kind in (DATA, HEADERS) and f.flags & END_STREAM and f.stream:
                ended.add(f.stream)
            elif f.kind == RST_STREAM:
                reset.add(f.stream)
    return ended - reset


@dataclass
class Outcome:
    problems: list[str]  # what went wrong (nothing: empty)
    goaway: str | None  # the GOAWAY's error, if the connector sent one
    peak_kib: int


def run_case(case: Case, env: dict[str, str] | None = None,
             log: Callable[[str], None] | None = None) -> Outcome:
    problems: list[str] = []
    client = RawClient([*CONNECTOR, case.kind], env)
    client.send(b"".join(f.encode() for f in case.init))
    if not client.wait(lambda: client.ended(1), BOUND):
        problems.append("Init was not answered")
    if case.greedy:
        client.pause_reading.set()
    for unit in case.units:
        client.send(b"".join(f.encode() for f in unit))
    if case.greedy:
        time.sleep(1.0)
        client.pause_reading.clear()
    # A well-behaved client from here on: windows for what it opened, then a PING.
    client.send(settings((4, 1 << 20)) + (b"" if case.greedy else window_update(0, 1 << 20)))
    expected = _client_ended([case.init, *case.units])
    pinged = client.ping(BOUND, b"fuzzping")
    answered = client.wait(lambda: client.eof or all(client.ended(s) for s in expected), BOUND)
    goaway = client.goaway()
    if goaway is None and not (pinged and answered):
        missing = sorted(s for s in expected if not client.ended(s))
        problems.append(f"hangs: PING answered {pinged}, streams not ended {missing[:10]}")
    if goaway is not None and not client.wait(lambda: client.eof, BOUND):
        problems.append("output not closed after GOAWAY")
    maxrss = client.peak_memory()
    status, stderr = client.finish(BOUND)
    if status != 0:
        problems.append(f"exit status {status}")
    if client.after_goaway:
        problems.append(f"{client.after_goaway} bytes written after GOAWAY")
    if maxrss > MAX_RSS:
        problems.append(f"peak memory {maxrss >> 10} MiB")
    problems += _check_stderr(stderr, goaway, client)
    if not case.mutation_rate:  # a valid conversation: no error of any kind
        errors = [error_name(f.error_code) for f in client.of(RST_STREAM)
                  if f.error_code in ERROR_CODES]
        if goaway is not None or errors:
            problems.append(f"errors in a valid conversation: GOAWAY "
                            f"{error_name(goaway.error_code) if goaway else None}, "
                            f"resets {errors}")
    if log is not None:
        codes = [error_name(f.error_code) for f in client.of(RST_STREAM)]
        log(f"seed {case.seed}: {case.kind}, rate {case.mutation_rate}, greedy {case.greedy}, "
            f"{len(case.units)} units, GOAWAY "
            f"{error_name(goaway.error_code) if goaway else None}, resets {codes}, "
            f"peak {maxrss >> 10} MiB\n{stderr}")
    return Outcome(problems, error_name(goaway.error_code) if goaway else None, maxrss)


def _check_stderr(stderr: str, goaway: object, client: RawClient) -> list[str]:
    problems = []
    if "Traceback" in stderr:
        problems.append("traceback on stderr")
    connection, streams = [], set()
    for line in stderr.splitlines():
        match = _LINE.fullmatch(line)
        if match is None:
            problems.append(f"unexpected line on stderr: {line[:200]}")
        elif match.group(1):
            connection.append(match.group(1))
        else:
            streams.add((int(match.group(2)), match.group(3)))
    from h2client import Frame as Received

    if isinstance(goaway, Received):
        if connection != [error_name(goaway.error_code)]:
            problems.append(f"GOAWAY {error_name(goaway.error_code)}, stderr says {connection}")
    elif connection:
        problems.append(f"connection error {connection} on stderr without a GOAWAY")
    resets = {(f.stream, error_name(f.error_code)) for f in client.of(RST_STREAM)
              if f.error_code in ERROR_CODES}
    if resets - streams:
        problems.append(f"stream errors not on stderr: {sorted(resets - streams)[:5]}")
    if streams - resets and goaway is None:
        problems.append(f"stream errors told but not sent: {sorted(streams - resets)[:5]}")
    return problems


def fuzz(first: int, cases: int, seconds: float, fx: Fixture,
         out: Callable[[str], None] = print) -> tuple[int, list[tuple[int, list[str]]]]:
    """Run seeds ``first``... until ``cases`` are done or ``seconds`` have passed: how
    many ran, and the seeds that failed with their problems."""
    deadline = time.monotonic() + seconds
    failures = []
    done = peak = peak_seed = 0
    goaways: dict[str, int] = {}
    for seed in range(first, first + cases):
        if time.monotonic() > deadline:
            break
        outcome = run_case(make_case(seed, fx))
        done += 1
        if outcome.peak_kib > peak:
            peak, peak_seed = outcome.peak_kib, seed
        if outcome.goaway:
            goaways[outcome.goaway] = goaways.get(outcome.goaway, 0) + 1
        if outcome.problems:
            failures.append((seed, outcome.problems))
            out(f"FAILED seed {seed}: {'; '.join(outcome.problems)}\n"
                f"  replay: python tests/h2fuzz.py --seed {seed}")
    ended = ", ".join(f"{n} {code}" for code, n in sorted(goaways.items())) or "none"
    out(f"h2fuzz: {done} cases from seed {first}, {len(failures)} failed; connections ended "
        f"by GOAWAY: {ended}; peak memory {peak >> 10} MiB (seed {peak_seed})")
    return done, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--first", type=int, help="first seed (default: a random one)")
    parser.add_argument("--seed", type=int, help="replay this one case, with its details")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="h2fuzz-") as tmp:
        fx = prepare(Path(tmp))
        if args.seed is not None:
            problems = run_case(make_case(args.seed, fx), log=print).problems
            print("\n".join(problems) or "ok")
            raise SystemExit(1 if problems else 0)
        first = args.first if args.first is not None else random.randrange(10**9)
        print(f"h2fuzz: from seed {first}, for {args.seconds:.0f} s at most", flush=True)
        _, failures = fuzz(first, args.cases, args.seconds, fx)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
