"""plakar's two pipes, made ready for the HTTP/2 connection they carry.

The connection is read from and written to private duplicates of stdin and
stdout: fd 1 is pointed at stderr, so a stray ``print`` can never corrupt
the HTTP/2 stream, and fd 0 at /dev/null. The pipes are enlarged (Linux), so
that a 1 MiB message crosses in one write.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

# Pipe buffer asked for (Linux): a 1 MiB message then crosses in one write
# instead of sixteen 64 KiB round trips between plakar and the connector.
PIPE_SIZE = 1 << 20


def _grow_pipe(fd: int) -> None:
    """Enlarge the buffer of pipe ``fd`` to PIPE_SIZE, or as far as allowed."""
    try:
        import fcntl
    except ImportError:  # not a Unix system
        return
    setsz = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsz is None:
        return
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        fcntl.fcntl(fd, setsz, PIPE_SIZE)
    except OSError:
        # Unprivileged processes may not go above /proc/sys/fs/pipe-max-size.
        with contextlib.suppress(OSError, ValueError), \
                open("/proc/sys/fs/pipe-max-size") as f:
            fcntl.fcntl(fd, setsz, min(PIPE_SIZE, int(f.read())))


@contextlib.contextmanager
def stdio_pipes() -> Iterator[tuple[int, int]]:
    """Private copies of stdin and stdout, (read fd, write fd); fds 0 and 1 made harmless."""
    rfd, wfd = os.dup(0), os.dup(1)
    for fd in (rfd, wfd):
        _grow_pipe(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    try:
        yield rfd, wfd
    finally:
        for fd in (rfd, wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
