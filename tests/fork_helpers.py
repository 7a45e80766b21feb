"""Helpers of the fork server tests (tests/test_forkserver.py, tests/test_package.py):
processes as /proc shows them."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def kill_processes_of(folder: Path) -> None:
    """Kill every process whose command line names ``folder`` (the servers, in
    any namespace, their spares and children: the socket path is in argv)."""
    needle = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {check}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    found.append(int(entry.name))
    return found


def spare_of(server: int) -> int:
    def find() -> int | None:
        for pid in children_of(server):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "fork-spare":
                    return pid
        return None
    return int(wait_for(find))


def pipe_inodes(pid: int) -> set[str]:
    fd_dir = Path(f"/proc/{pid}/fd")
    found = set()
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            target = os.readlink(fd_dir / fd)
            if target.startswith("pipe:"):
                found.add(target)
    return found


def occurrences(pid: int, marker: bytes) -> int:
    """How many times ``marker`` is in the readable memory of ``pid``."""
    found = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addresses, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in addresses.split("-"))
            try:
                mem.seek(start)
                found += mem.read(end - start).count(marker)
            except (OSError, OverflowError, ValueError):
                continue
    return found


def stdout_ends(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, float]:
    """A connector spawned with plain pipes whose stdin is closed at once: its
    exit status, and how long its stdout took to reach EOF (no other process
    holding it), or -1 if it did not within 10 s."""
    proc = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    started = time.monotonic()
    proc.stdin.close()
    fd = proc.stdout.fileno()
    try:
        while select.select([fd], [], [], max(0.0, started + 10 - time.monotonic()))[0]:
            if not os.read(fd, 65536):
                return proc.wait(10), time.monotonic() - started
        return proc.wait(10), -1.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def status_of(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
