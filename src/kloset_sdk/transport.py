"""plakar's two pipes, made ready for the HTTP/2 connection they carry.

The connection is read from and written to private duplicates of stdin and
stdout: fd 1 is pointed at stderr, so a stray ``print`` can never corrupt
the HTTP/2 stream, and fd 0 at /dev/null. The pipes are enlarged (Linux), so
that a 1 MiB message crosses in one write. Also: glibc's allocator tuned for
streaming (:func:`tune_malloc`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import sys
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


# glibc mallopt parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Bulk buffers (1 MiB chunks, protobuf messages, HTTP bodies) stay below this
# size and come from the heap, where freed memory is reused...
MMAP_THRESHOLD = 32 << 20
# A store's Puts hold whole blocks of objects (a few MiB each): mapped, they go
# back to the system once sent, which bounds a store's memory (~20 MiB less).
STORE_MMAP_THRESHOLD = 4 << 20
# ...up to this much free memory is kept per arena instead of being unmapped...
TRIM_THRESHOLD = 32 << 20
# ...and the many I/O threads share this many arenas, so that free memory
# is not scattered over one arena per thread.
ARENA_MAX = 2


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc reuse freed bulk buffers instead of mapping fresh pages.

    By default glibc serves allocations above its mmap threshold with fresh
    mappings and gives freed memory back eagerly, so streaming content paid
    a page fault for every 4 KiB of every chunk, protobuf message and HTTP
    buffer (about 200,000 faults per GiB read from Azure), and one arena per
    busy thread scattered free memory. No-op on other C libraries and systems.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = [mallopt(param, value) for param, value in (
        (_M_ARENA_MAX, ARENA_MAX), (_M_MMAP_THRESHOLD, mmap_threshold),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))]
    return all(done)


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
