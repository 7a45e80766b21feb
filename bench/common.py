"""Shared pieces of the benchmarks: scale, data, timing, machine, plakar, processes."""

from __future__ import annotations

import contextlib
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
for _p in (ROOT / "tests", BENCH):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from azblob_package import install_azblob  # noqa: E402
from azure.storage.blob import BlobServiceClient, ContainerClient  # noqa: E402
from azurite import Azurite  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from go_package import GoPackageError, go_package_ptar, install_go_azblob  # noqa: E402
from plakar_env import PlakarEnv, plakar_bin  # noqa: E402, F401

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# BENCH_SCALE multiplies every data size (1.0 = the sizes of the issue).
DEFAULT_SCALE = 0.25
SCALE = float(os.environ.get("BENCH_SCALE", DEFAULT_SCALE))


def sdk_client(az: Azurite, container: str, endpoint: str | None = None,
               **sizes: int) -> ContainerClient:
    """The Azure SDK alone (the references' client) on ``container`` of ``az``, through
    ``endpoint`` (a proxy) if given; ``sizes`` (max_single_get_size, max_block_size...)
    set its transfers like those of the connector it is compared with."""
    cs = az.connection_string
    if endpoint:
        cs = cs.replace(az.endpoint, endpoint)
    return BlobServiceClient.from_connection_string(cs, **sizes).get_container_client(container)


def scaled(full: int, minimum: int = 1) -> int:
    return max(minimum, int(full * SCALE))


def human(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n:.0f} B"


def count(n: int) -> str:
    return f"{n:,}".replace(",", " ")


# -- data --

def random_bytes(size: int, seed: int) -> Iterator[bytes]:
    """``size`` incompressible, seed-determined bytes in 1 MiB pieces (AES-CTR: fast)."""
    enc = Cipher(algorithms.AES(seed.to_bytes(32, "little")), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(MiB)
    left = size
    while left > 0:
        n = min(left, MiB)
        yield enc.update(zeros[:n])
        left -= n


def random_block(size: int, seed: int) -> bytes:
    return b"".join(random_bytes(size, seed))


def write_file(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for chunk in random_bytes(size, seed):
            out.write(chunk)


def drop_caches_hint() -> None:
    """Flush dirty pages so that a following timed run does not pay for earlier writes."""
    os.sync()


# -- timing --

@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def alternate(runs: int, cpu: dict[str, dict[str, float]] | None = None,
              pids: dict[str, int] | None = None,
              **fns: Callable[[], Any]) -> dict[str, list[float]]:
    """Run each function ``runs`` times, interleaved (a, b, a, b...), so that both
    see the same machine conditions; returns the times of each.

    With ``pids`` (name -> pid), ``cpu`` receives the mean CPU seconds per run
    each of those processes used during each function."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    used: dict[str, dict[str, float]] = {name: {} for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            with CpuMeter(**(pids or {})) as meter:
                times[name].append(timed(fn)[0])
            for proc, seconds in meter.used.items():
                used[name][proc] = used[name].get(proc, 0.0) + seconds / runs
    if cpu is not None:
        cpu.update(used)
    return times


def cpu_note(label: str, cpu: dict[str, dict[str, float]]) -> str:
    """``label``: CPU seconds per run of each process, for each measured function."""
    parts = []
    for fn, procs in cpu.items():
        inner = ", ".join(f"{proc} {seconds:.2f}" for proc, seconds in procs.items())
        parts.append(f"{fn}: {inner}")
    return f"{label}: CPU s per run — " + "; ".join(parts)


# -- machine --

def _first(pattern: str, text: str, default: str = "?") -> str:
    m = re.search(pattern, text, re.MULTILINE)
    return m.group(1).strip() if m else default


def machine(plakar: str) -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kib = int(_first(r"^MemTotal:\s+(\d+)", meminfo, "0"))
    version = subprocess.run([plakar, "version"], capture_output=True, text=True,
                             env={"HOME": tempfile.gettempdir(), "PATH": "/usr/bin:/bin"})
    versions = {}
    for pkg in ("grpcio", "protobuf", "azure-storage-blob", "azure-core"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version as pkg_version
            versions[pkg] = pkg_version(pkg)
    azurite = "?"
    with contextlib.suppress(Exception):
        pkg_json = ROOT / ".tools/azurite/node_modules/azurite/package.json"
        azurite = _first(r'"version":\s*"([^"]+)"', pkg_json.read_text())
    return {
        "cpu": _first(r"^model name\s*:\s*(.+)$", cpuinfo, platform.processor() or "?"),
        "cores": str(os.cpu_count()),
        "ram": f"{mem_kib / (1024 * 1024):.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "plakar": _first(r"(v\d+\.\d+\.\d+\S*)", version.stdout + version.stderr),
        "azurite": azurite,
        **versions,
    }


# -- plakar --

# The plugins' command lines: ours is ``.../plakar-azblob KIND``, the Go package's
# ``.../azblob-KIND`` (no argument).
OURS_NEEDLE = b"plakar-azblob"
GO_NEEDLE = b"/azblob-"


class BenchPlakar(PlakarEnv):
    """A private plakar with the development azblob package installed, or with the
    official Go package (``go=True``: the Go reference's figures)."""

    def __init__(self, go: bool = False) -> None:
        super().__init__()
        self.go = go
        self.needle = GO_NEEDLE if go else OURS_NEEDLE
        if go:
            install_go_azblob(self)
        else:
            install_azblob(self, self.root / "azblob-pkg")

    def plakar(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        return self.run(*args, timeout=timeout)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("cached", "stop", ok=False, timeout=30)
        super().stop()


_go_state: dict[str, str | None] = {}


def go_ready(notes: list[str]) -> bool:
    """Whether the official Go package is built (tests/go_package.py builds it once
    per machine; ``make bench`` depends on ``make go-azblob``). If it cannot be, the
    sections measure ours alone and one note says why (so with ``BENCH_GO=0``)."""
    if "error" not in _go_state and os.environ.get("BENCH_GO", "1") == "0":
        _go_state["error"] = "BENCH_GO=0"
        notes.append("no Go package figures: BENCH_GO=0")
    if "error" not in _go_state:
        try:
            go_package_ptar()
            _go_state["error"] = None
        except GoPackageError as exc:
            _go_state["error"] = str(exc).splitlines()[0]
            notes.append(f"no Go package figures: {_go_state['error']}")
    return _go_state["error"] is None


class Contenders:
    """A section's Azurite, our package in a plakar home, and (when it is built) the
    official Go package in another, against the same Azurite and data."""

    def __init__(self, notes: list[str]) -> None:
        from azurite import start_azurite

        self.az = start_azurite()
        self.pk = BenchPlakar()
        self.go: BenchPlakar | None = None
        try:
            if go_ready(notes):
                self.go = BenchPlakar(go=True)
        except BaseException:
            self.close()
            raise
        self.work = self.pk.root / "work"
        self.work.mkdir()

    def close(self) -> None:
        try:
            self.pk.stop()
            if self.go is not None:
                self.go.stop()
        finally:
            self.az.stop()


SNAP_LINE = re.compile(r"^([0-9a-f]{8}): backup completed", re.MULTILINE)


def snapshot_id(proc: subprocess.CompletedProcess[str]) -> str:
    found = SNAP_LINE.findall(proc.stdout + proc.stderr)
    if not found:
        raise RuntimeError(f"no snapshot in:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return str(found[-1])


# -- processes: peak memory of the plugins --

def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def forked_connector(pid: int) -> str | None:
    """The kind of connector ``pid`` is if a fork server forked it (kloset_sdk._process.forkserver
    names it ``kloset-KIND``; its command line and environment are the server's), else
    None. Its launcher (the process plakar started) only waits for it."""
    try:
        comm = _read(f"/proc/{pid}/comm").decode(errors="replace").strip()
        if not comm.startswith("kloset-"):
            return None
        parent = int(_read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[1])
        if b"\0fork-server\0" not in _read(f"/proc/{parent}/cmdline"):
            return None
    except (OSError, ValueError, IndexError):
        return None
    return comm.removeprefix("kloset-")


class PluginMemory:
    """Polls /proc for the processes of one plakar environment: each plugin's VmHWM,
    and the CPU time of plugins and of plakar (its command and its cache daemon).

    They are the processes whose environment holds the environment's private
    folder (plakar and its cache daemon pass their environment on to the
    connectors they start); a plugin's command line mentions ``plakar-azblob``.
    Connectors forked by our fork server (:func:`forked_connector`) count as
    plugins too (one plakar environment is measured at a time).
    ``others`` are more processes to account CPU for (such as Azurite).
    """

    def __init__(self, marker: str, needle: bytes = b"plakar-azblob", period: float = 0.05,
                 **others: int) -> None:
        self.marker = marker.encode()
        self.needle = needle
        self.period = period
        self.peaks: dict[int, tuple[str, int]] = {}  # plugin pid -> (kind, VmHWM bytes)
        self._cpu: dict[int, tuple[str, float, float]] = {}  # pid -> (group, first, last)
        self._foreign: dict[int, bytes] = {}  # pid -> command line when found foreign
        self._others = others
        self._others_start = {name: cpu_seconds(pid) for name, pid in others.items()}
        self.others_cpu: dict[str, float] = {}
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-watch")

    def __enter__(self) -> PluginMemory:
        self._started = time.monotonic()
        self.poll(initial=True)  # processes already there count from now
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.monotonic() - self._started
        self.others_cpu = {name: cpu_seconds(pid) - self._others_start[name]
                           for name, pid in self._others.items()}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.period)
        self.poll()

    def poll(self, initial: bool = False) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                cmdline = _read(f"/proc/{pid}/cmdline")
                forked = forked_connector(pid)
                # A process forked by the bench shows the bench's environment until it
                # execs: a foreign process is looked at again when its command changes.
                if self._foreign.get(pid) == cmdline and forked is None:
                    continue
                if pid not in self._cpu and forked is None \
                        and self.marker not in _read(f"/proc/{pid}/environ"):
                    self._foreign[pid] = cmdline
                    continue
                status = _read(f"/proc/{pid}/status").decode()
            except OSError:
                continue
            # A new process shows plakar's command line until it execs: look again.
            is_plugin = forked is not None or self.needle in cmdline \
                or self._cpu.get(pid, ("",))[0] == "plugins"
            used = cpu_seconds(pid)
            group = "plugins" if is_plugin else "plakar"
            first = self._cpu[pid][1] if pid in self._cpu else (used if initial else 0.0)
            self._cpu[pid] = (group, first, used)
            if not is_plugin:
                continue
            m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
            if not m:
                continue
            args = cmdline.rstrip(b"\0").split(b"\0")
            kind = forked or args[-1].decode(errors="replace")
            # The Go package's connectors take no argument: .../azblob-importer.
            kind = kind.rsplit("/", 1)[-1].removeprefix("azblob-")
            hwm = int(m.group(1)) * KiB
            old = self.peaks.get(pid, (kind, 0))[1]
            self.peaks[pid] = (kind, max(old, hwm))

    def peak(self, kind: str | None = None) -> int:
        values = [v for k, v in self.peaks.values() if kind is None or k == kind]
        return max(values, default=0)

    def cpu(self, group: str) -> float:
        """CPU seconds used by ``group`` ("plakar" or "plugins") while watched (a
        process already running when the watch began counts from its start)."""
        return sum(last - first for g, first, last in self._cpu.values() if g == group)

    def summary(self) -> str:
        parts = [f"plakar {self.cpu('plakar'):.1f}", f"plugins {self.cpu('plugins'):.1f}"]
        parts += [f"{name} {used:.1f}" for name, used in self.others_cpu.items()]
        cores = os.cpu_count() or 1
        return (f"CPU s: {', '.join(parts)} in {self.seconds:.1f} s "
                f"({cores} cores: {cores * self.seconds:.0f} CPU s available)")


# -- Azure --

def service(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def upload_many(container: ContainerClient, items: list[tuple[str, bytes]],
                workers: int = 16) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda it: container.upload_blob(it[0], it[1], overwrite=True), items))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class NullSink(io.RawIOBase):
    """A seekable stream that discards what is written (the SDK's parallel download
    needs a seekable target)."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = 0
        self.written = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def write(self, data: Any) -> int:
        n = len(data)
        self.pos += n
        self.written += n
        return n


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads)."""
    try:
        fields = _read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class CpuMeter:
    """CPU seconds used by a few processes between ``start`` and ``stop``."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {name: cpu_seconds(pid) - self._start[name]
                     for name, pid in self.pids.items()}


def minor_faults(pid: int) -> int:
    try:
        return int(_read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return 0


def watched(pk: PlakarEnv, notes: list[str], label: str, *args: str,
            azurite: int | None = None) -> tuple[float, PluginMemory,
                                                 subprocess.CompletedProcess[str]]:
    """Run plakar ``args``; return its wall time and the watch of its processes.

    A line of CPU evidence (plakar, plugins, Azurite) is added to ``notes``."""
    others = {"Azurite": azurite} if azurite else {}
    needle = getattr(pk, "needle", OURS_NEEDLE)
    with PluginMemory(str(pk.root), needle, **others) as mem:
        seconds, proc = timed(lambda: pk.run(*args, timeout=3600))
    notes.append(f"{label}: {seconds:.1f} s; {mem.summary()}")
    return seconds, mem, proc
