"""Serve a gRPC server over the process's stdin/stdout pipes.

grpcio cannot serve on pipes, so the server listens on a Unix socket in a
fresh 0700 temporary directory; the process connects to it once, removes the
socket file and directory (no other process can ever reach the server), and
relays stdin -> socket and socket -> stdout in the kernel with ``splice``
(a plain copy loop where splice does not apply). The relay's file
descriptors are private duplicates: fd 1 is pointed at stderr, so a stray
``print`` can never corrupt the HTTP/2 stream, and fd 0 at /dev/null.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Callable

import grpc

log = logging.getLogger("kloset_sdk")

RELAY_CHUNK = 1 << 20
# Pipe buffer asked for (Linux): a 1 MiB message then crosses in one write
# instead of sixteen 64 KiB round trips between plakar and the relay.
PIPE_SIZE = 1 << 20
_NO_SPLICE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}


def _relay(src: int, dst: int) -> None:
    """Copy src to dst until EOF or until either side fails.

    Both directions are spliced in the kernel where possible (pipe -> socket
    blocking, socket -> pipe non-blocking, see _splice_socket); otherwise the
    bytes go through a reused buffer.
    """
    try:
        mode = os.fstat(src).st_mode
        if stat.S_ISFIFO(mode) and _splice_all(src, dst):
            return
        if stat.S_ISSOCK(mode) and _splice_socket(src, dst):
            return
        buffer = bytearray(RELAY_CHUNK)
        view = memoryview(buffer)
        while n := os.readv(src, [buffer]):
            out = view[:n]
            while out:
                out = out[os.write(dst, out):]
    except OSError as exc:
        log.debug("relay %d -> %d stopped: %s", src, dst, exc)


def _splice_all(src: int, dst: int) -> bool:
    """Splice until EOF; False if splice does not apply to these descriptors."""
    splice = getattr(os, "splice", None)
    if splice is None:
        return False
    try:
        while splice(src, dst, RELAY_CHUNK):
            pass
    except OSError as exc:
        if exc.errno in _NO_SPLICE:
            return False
        raise
    return True


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


def _splice_socket(src: int, dst: int) -> bool:
    """Splice socket ``src`` into pipe ``dst`` until EOF; False if splice does not apply.

    A blocking splice from a Unix socket can sit on data that has already
    arrived (seen: a response stuck in the kernel until the next one came),
    so every splice is non-blocking and poll() does the waiting: first for
    data to read, then for room in the pipe.
    """
    splice = getattr(os, "splice", None)
    nonblock = getattr(os, "SPLICE_F_NONBLOCK", None)
    if splice is None or nonblock is None or not stat.S_ISFIFO(os.fstat(dst).st_mode):
        return False
    readable, writable = select.poll(), select.poll()
    readable.register(src, select.POLLIN)
    writable.register(dst, select.POLLOUT)
    started = False
    try:
        while True:
            try:
                n = splice(src, dst, RELAY_CHUNK, flags=nonblock)
            except BlockingIOError:
                readable.poll()
                writable.poll()
                continue
            if n == 0:
                return True
            started = True
    except OSError as exc:
        if not started and exc.errno in _NO_SPLICE:
            return False
        raise


# A Unix socket path must fit in sun_path (108 bytes on Linux, 104 on macOS).
_MAX_SOCKET_PATH = 100


def _private_dir() -> str:
    """A fresh 0700 directory whose socket path fits; $TMPDIR first, then /tmp."""
    for parent in (None, "/tmp"):
        workdir = tempfile.mkdtemp(prefix="kloset-", dir=parent)
        if len(os.path.join(workdir, "grpc.sock")) <= _MAX_SOCKET_PATH:
            return workdir
        os.rmdir(workdir)
    raise OSError("no temporary directory short enough for a Unix socket")


class StdioTransport:
    """Owns the private descriptors, the socket and the two relay threads."""

    def __init__(self) -> None:
        # Private copies of the pipes plakar gave us; fds 0/1 become harmless.
        self._in = os.dup(0)
        self._out = os.dup(1)
        for fd in (self._in, self._out):
            _grow_pipe(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        self._sock: socket.socket | None = None
        self.done = threading.Event()

    def attach(self, server: grpc.Server) -> None:
        """Start ``server`` on a private socket, then connect the pipes to it."""
        workdir = _private_dir()
        path = os.path.join(workdir, "grpc.sock")
        try:
            if server.add_insecure_port(f"unix:{path}") == 0:
                raise OSError(f"cannot listen on {path}")
            server.start()
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.connect(path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(workdir)
        fd = self._sock.fileno()
        for name, src, dst in (("stdin-relay", self._in, fd), ("stdout-relay", fd, self._out)):
            threading.Thread(target=self._run, args=(src, dst), name=name, daemon=True).start()

    def _run(self, src: int, dst: int) -> None:
        _relay(src, dst)
        self.done.set()  # stdin EOF, stdout gone or server closed: either way, end

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        for fd in (self._in, self._out):
            with contextlib.suppress(OSError):
                os.close(fd)


def serve_stdio(server: grpc.Server, on_exit: Callable[[], None] | None = None,
                mmap_threshold: int = MMAP_THRESHOLD) -> None:
    """Run ``server`` on stdin/stdout until plakar closes stdin; then stop promptly."""
    tune_malloc(mmap_threshold)
    transport = StdioTransport()
    transport.attach(server)
    transport.done.wait()
    log.debug("stdin closed: stopping")
    # plakar waits for us to exit: leave well within a second.
    stopped = server.stop(grace=0.3)
    transport.close()
    if on_exit is not None:
        with contextlib.suppress(Exception):
            on_exit()
    stopped.wait(0.5)
