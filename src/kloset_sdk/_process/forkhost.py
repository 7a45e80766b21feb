"""The fork server process (see :mod:`~kloset_sdk._process.forkserver` for what it is for).

The server preloads the connectors, listens on its socket and keeps one
*spare* child forked in advance, waiting in ``accept()``. The spare that
accepts a launcher tells the server (which forks the next spare at once),
checks the launcher (same uid, same code, same context from ``/proc/PID``),
answers with a hello, and only then receives the launcher's descriptors and
settings: it becomes the connector. The server itself never reads anything a
launcher sends; it reaps its children and writes each one's wait status to
a pipe whose read end the launcher got with the hello.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import time

from . import forkcontext
from .forkserver import (
    _ERROR,
    _EXIT,
    _HELLO,
    _IDENT,
    _REQUEST,
    _WAIT_STATUS,
    ERROR,
    EXIT,
    FAILED_BACKOFF,
    GO,
    HAS_PIDFD,
    HELLO_MAGIC,
    IDENT_MAGIC,
    MAX_REQUEST,
    READY,
    REFUSED_MAGIC,
    REQUEST_MAGIC,
    START_GRACE,
    _private,
    idle_timeout,
    lock_path,
    lock_state,
    peer,
    recv_exact,
    recv_fds,
    stopped,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    Serve = Callable[[str, Callable[[int], NoReturn]], NoReturn]

PROBE_TIMEOUT = 1.0  # seconds a new server gives the one holding the lock to answer
IDENT_TIMEOUT = 2.0  # seconds a spare waits for what a launcher sends
CHECK_INTERVAL = 2.0  # seconds between checks that the socket is still ours
SPARE_FAILURES = 5  # spares dying in a row before the server gives up
SPARE_NAME = "fork-spare"


def run(path: str, *, fingerprint: str, preload: Callable[[], None],
        serve: Serve) -> NoReturn:
    """Be the fork server on ``path``: preload, then serve each launcher in a child.

    ``serve(kind, exit)`` runs in each child, with plakar's stdio in place, and
    ends the child through ``exit(status)``.
    """
    folder = os.path.dirname(path)
    if not _private(folder, os.getuid(), create=False):
        os._exit(1)
    lock = _take_lock(path, fingerprint)
    if lock is None:
        os._exit(0)  # another server is alive, or starting
    _write_lock(lock, str(os.getpid()))
    # A server is only ever reached by launchers of its own context and code:
    # they are in its name. Started elsewhere (an unshare(2) without fork
    # puts it in another PID namespace), it must not serve them.
    key = forkcontext.process_key()
    if key is None or not path.endswith("-" + forkcontext.digest(fingerprint, key) + ".sock"):
        _fail(lock, "its code or context differs from its launcher's")
    try:
        preload()
        # What each child uses, loaded once here.
        import locale  # noqa: F401
        import threading  # noqa: F401

        _libc()
    except BaseException as err:
        _fail(lock, f"preloading failed: {type(err).__name__}: {err}")
    if forkcontext.process_key() != key:
        _fail(lock, "preloading changed its context")
    import gc

    # Objects created so far are shared with every child: keep the collector
    # from touching (and so copying) their pages.
    gc.collect()
    gc.freeze()
    try:
        listener = _listen(path)
    except OSError as err:
        _fail(lock, f"cannot listen on {path}: {err.strerror}")
    bound = os.stat(path).st_ino
    _write_lock(lock, f"{os.getpid()} {bound}")
    _clean(folder, os.path.basename(path))
    Host(path, bound, listener, lock, fingerprint, serve).loop()


# -- the lock --

def _take_lock(path: str, fingerprint: str) -> int | None:
    """The lock, held; None if a live server holds it. A server that is
    stopped, gone, stuck starting or no longer answering is replaced: its
    lock file is unlinked and a new one taken."""
    name = lock_path(path)
    for _ in range(4):
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if _flock(fd):
            if _same_file(name, os.fstat(fd).st_ino):
                return fd
            os.close(fd)  # removed by a server that just exited: take the new one
            continue
        if _alive(fd, path, fingerprint):
            os.close(fd)
            return None
        _unlink_if(name, os.fstat(fd).st_ino)
        os.close(fd)
    return None


def _flock(fd: int) -> bool:
    # A launcher or stop_servers may hold it shared for a few microseconds.
    for delay in (0.0, 0.005, 0.02):
        time.sleep(delay)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            continue
    return False


def _alive(fd: int, path: str, fingerprint: str) -> bool:
    """Whether the server holding ``fd`` still does its job."""
    pid, inode, failure = lock_state(fd)
    if failure:
        return True  # failed and exiting: its record stands for FAILED_BACKOFF
    if not pid or stopped(pid):
        return False
    if not inode:
        return time.time() - os.fstat(fd).st_mtime < START_GRACE
    return _same_file(path, inode) and probe(path, fingerprint)


def probe(path: str, fingerprint: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the server at ``path`` answers a launcher of our code and context."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout)
        conn.connect(path)
        ident = fingerprint.encode(errors="surrogateescape")
        conn.sendall(_IDENT.pack(IDENT_MAGIC, len(ident)) + ident)
        hello, fds = recv_fds(conn, _HELLO.size, 2)
        for fd in fds:
            os.close(fd)
        return hello[:4] == HELLO_MAGIC
    except OSError:
        return False
    finally:
        conn.close()  # the spare sees no request, and exits


def _write_lock(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode() + b"\n", 0)


def _fail(lock: int, why: str) -> NoReturn:
    """Record why this server cannot serve (launchers do not start another
    for FAILED_BACKOFF seconds), and exit."""
    _write_lock(lock, f"failed: {why}")
    os._exit(1)


def _same_file(path: str, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _unlink_if(path: str, inode: int) -> None:
    if _same_file(path, inode):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _listen(path: str) -> socket.socket:
    """A socket listening at ``path``, replacing whatever was there at once
    (bound under a temporary name, then renamed)."""
    tmp = os.path.join(os.path.dirname(path), f".{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(tmp)
        os.chmod(tmp, 0o600)
        listener.listen(64)
        os.rename(tmp, path)
    except OSError:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Spares accept without blocking (they poll first).
    listener.setblocking(False)
    return listener


def _clean(folder: str, ours: str) -> None:
    """Remove what dead servers left in ``folder`` (any app, version or context):
    unlocked lock files (failure records once FAILED_BACKOFF is over),
    sockets without a live lock, temporary sockets of processes gone."""
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        full = os.path.join(folder, name)
        if name.endswith(".sock.lock") and name != ours + ".lock":
            try:
                fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # a live server's
            try:
                _pid, inode, failure = lock_state(fd)
                recent = now - os.fstat(fd).st_mtime < FAILED_BACKOFF
                if (failure or not inode) and recent:
                    continue  # a failed start: kept to hold back new ones
                for stale in (full, full[:-len(".lock")]):
                    with contextlib.suppress(OSError):
                        os.unlink(stale)
            finally:
                os.close(fd)
        elif name.endswith(".sock") and name != ours and name + ".lock" not in names:
            with contextlib.suppress(OSError):
                os.unlink(full)
        elif name.startswith(".") and name.endswith(".tmp"):
            owner = name[1:-4]
            if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                with contextlib.suppress(OSError):
                    os.unlink(full)


# -- the server's loop --

class Host:
    """The server: one spare forked ahead, the children it became, their reaping."""

    def __init__(self, path: str, bound: int, listener: socket.socket, lock: int,
                 fingerprint: str, serve: Serve) -> None:
        self.path, self.bound, self.listener, self.lock = path, bound, listener, lock
        self.fingerprint, self.serve = fingerprint, serve
        self.idle = idle_timeout()
        # The spare: (pid, our end of its control socket, status pipe's write end).
        self.spare: tuple[int, int, int] | None = None
        self.children: dict[int, int] = {}  # pid -> its status pipe's write end
        self.failures = 0
        self.last = time.monotonic()
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def loop(self) -> NoReturn:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # wakes the poll
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            while not self.stopping and self._still_ours():
                if self.spare is None:
                    if self.failures >= SPARE_FAILURES:
                        _fail(self.lock, "its spare children keep dying")
                    self._fork_spare()
                poller = select.poll()
                poller.register(self.wake_r, select.POLLIN)
                if self.spare is not None:
                    poller.register(self.spare[1], select.POLLIN)
                timeout = CHECK_INTERVAL
                if not self.children and self.idle != float("inf"):
                    left = self.last + self.idle - time.monotonic()
                    if left <= 0:
                        break  # idle
                    timeout = min(timeout, left)
                for fd, _events in poller.poll(timeout * 1000):
                    if fd == self.wake_r:
                        self._drain()
                    elif self.spare is not None and fd == self.spare[1]:
                        self._spare_said()
        finally:
            self._exit()

    def _stop(self, _signum: int, _frame: Any) -> None:
        self.stopping = True

    def _still_ours(self) -> bool:
        return _same_file(self.path, self.bound)

    def _fork_spare(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError:  # out of processes or memory: try again a little later
            for fd in (status_r, status_w):
                os.close(fd)
            ours.close()
            theirs.close()
            self.failures += 1
            time.sleep(0.1 * self.failures)
            return
        if pid == 0:
            ours.close()
            keep = theirs.detach()
            server_only = [self.lock, self.wake_r, self.wake_w, status_w,
                           *self.children.values()]
            _spare(self.listener, keep, status_r, server_only, self.fingerprint, self.serve)
        theirs.close()
        os.close(status_r)
        self.spare = (pid, ours.detach(), status_w)

    def _spare_said(self) -> None:
        """The spare accepted a launcher (it is a child now) or died."""
        assert self.spare is not None
        pid, control, status_w = self.spare
        try:
            word = os.read(control, 1)
        except OSError:
            word = b""
        os.close(control)
        self.spare = None
        self.children[pid] = status_w  # closed once reaped
        if word:
            self.failures = 0
            self.last = time.monotonic()
        else:
            self.failures += 1

    def _drain(self) -> None:
        try:
            while os.read(self.wake_r, 64):
                pass
        except BlockingIOError:
            pass
        self._reap()

    def _reap(self) -> None:
        """Tell each ended child's launcher how it ended."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.last = time.monotonic()
            if self.spare is not None and self.spare[0] == pid:
                self._spare_said()  # died waiting: its control socket is closed
            status_w = self.children.pop(pid, None)
            if status_w is not None:
                # OSError: no launcher is waiting (a probe, or it died).
                with contextlib.suppress(OSError):
                    os.write(status_w, _WAIT_STATUS.pack(status))
                os.close(status_w)

    def _exit(self) -> NoReturn:
        if self._still_ours():
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self.listener.close()
        if self.spare is not None:
            # Its control socket closed: the spare serves what is already
            # queued, if anything, and exits.
            os.close(self.spare[1])
        _unlink_if(lock_path(self.path), os.fstat(self.lock).st_ino)
        os._exit(0)


# -- the spare, and the child it becomes --

def _spare(listener: socket.socket, control: int, status_r: int, server_only: list[int],
           fingerprint: str, serve: Serve) -> NoReturn:
    """Wait for a launcher; serve it. Runs in a fresh child of the server."""
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in server_only:
            os.close(fd)
        _name_process(SPARE_NAME)
        # Computed while waiting: the launcher's must be the same.
        key = forkcontext.process_key()
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        poller.register(control, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if listener.fileno() in ready:
                try:
                    conn, _ = listener.accept()
                    break
                except BlockingIOError:
                    continue
            if control in ready:
                os._exit(0)  # the server has gone: nothing is queued
        os.write(control, b"A")  # the server forks the next spare now
        os.close(control)
        listener.close()
        _child(conn, key, status_r, fingerprint, serve)
    except BaseException:
        os._exit(1)


def _child(conn: socket.socket, key: str | None, status_r: int, fingerprint: str,
           serve: Serve) -> NoReturn:
    conn.setblocking(True)
    conn.settimeout(IDENT_TIMEOUT)
    pid, uid = peer(conn)
    head = recv_exact(conn, _IDENT.size)
    magic, size = _IDENT.unpack(head) if head else (b"", 0)
    ident = recv_exact(conn, size) if magic == IDENT_MAGIC and size <= MAX_REQUEST else b""
    # Same user, same code, same context (read again from /proc: the
    # launcher's own word is not taken for it).
    if (uid != os.getuid() or pid <= 0 or key is None
            or ident != fingerprint.encode(errors="surrogateescape")
            or forkcontext.process_key(pid) != key):
        conn.sendall(_HELLO.pack(REFUSED_MAGIC, 0, 0))
        os._exit(0)
    fds = [status_r]
    flags = 0
    try:
        fds.insert(0, os.pidfd_open(os.getpid()))
        flags |= HAS_PIDFD
    except (AttributeError, OSError):
        pass  # kernel before 5.3: the launcher signals by pid
    conn.sendmsg([_HELLO.pack(HELLO_MAGIC, os.getpid(), flags)],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])
    for fd in fds:
        os.close(fd)
    # From here on, what the launcher sends is read by this child only.
    header, received = recv_fds(conn, _REQUEST.size, 4)
    if len(header) != _REQUEST.size or len(received) != 4:
        os._exit(0)  # a probe, or a launcher that gave up
    magic, *sizes, umask = _REQUEST.unpack(header)
    body = recv_exact(conn, sum(sizes)) if magic == REQUEST_MAGIC and sum(
        sizes) <= MAX_REQUEST else b""
    if len(body) != sum(sizes):
        os._exit(0)
    kind = body[:sizes[0]].decode()
    argv = body[sizes[0]:sizes[0] + sizes[1]]
    env = body[sizes[0] + sizes[1]:]
    try:
        _adopt(kind, argv, env, received[3], umask)
    except OSError as err:
        for fd in received:
            os.close(fd)
        message = f"cannot take the launcher's settings: {err}".encode()
        conn.sendall(_ERROR.pack(ERROR, len(message)) + message)
        os._exit(0)
    conn.sendall(READY)
    if recv_exact(conn, len(GO)) != GO:
        os._exit(0)  # the launcher gave up: plakar's pipes are not ours
    conn.settimeout(None)
    for target, fd in enumerate(received[:3]):
        os.dup2(fd, target)
    for fd in received:
        if fd > 2:
            os.close(fd)
    _serve(conn, kind, serve)


def _serve(conn: socket.socket, kind: str, serve: Serve) -> NoReturn:
    import threading

    def watch_launcher() -> None:
        # The launcher never sends more: EOF means it died (killed by plakar).
        with contextlib.suppress(OSError):
            conn.recv(1)
        os._exit(1)

    threading.Thread(target=watch_launcher, name="launcher-watch", daemon=True).start()

    def exit(status: int) -> NoReturn:
        with contextlib.suppress(OSError):
            conn.sendall(_EXIT.pack(EXIT, status))
        os._exit(status)

    serve(kind, exit)


def _adopt(kind: str, argv: bytes, env: bytes, cwd: int, umask: int) -> None:
    """Take the launcher's arguments, environment (time zone and character
    locale re-read from it, as a new process would), directory and umask."""
    import tempfile

    os.fchdir(cwd)
    sys.argv = [os.fsdecode(a) for a in argv.split(b"\0")] if argv else [kind]
    os.environ.clear()
    for item in env.split(b"\0") if env else []:
        key, sep, value = item.partition(b"=")
        if sep and key:
            os.environb[key] = value
    tempfile.tempdir = None  # TMPDIR may differ from the server's
    time.tzset()
    import locale

    # What the interpreter does at start (only LC_CTYPE; the others stay "C").
    with contextlib.suppress(ValueError, locale.Error):
        locale.setlocale(locale.LC_CTYPE, "")
    os.umask(umask)
    _name_process(f"kloset-{kind}")


_LIBC: list[Any] = []


def _libc() -> Any:
    """The C library, through ctypes (loaded once, by the server)."""
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None))
    return _LIBC[0]


def _name_process(name: str) -> None:
    """Name this process in ps and /proc (its command line is the server's)."""
    pr_set_name = 15
    with contextlib.suppress(OSError, AttributeError):
        _libc().prctl(pr_set_name, name[:15].encode(), 0, 0, 0)

