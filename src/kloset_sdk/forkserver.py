"""Start connectors in milliseconds: fork them from a preloaded server.

plakar starts a connector process for every command (a backup starts a
store, two importers, and its cache daemon a store of its own), and a
Python connector spends most of its start importing its libraries (the
Azure SDK alone takes ~0.15 s). So the first connector started also starts, in the
background, a *fork server*: a process that has imported everything once
and then waits on a Unix socket. Every later start (:func:`launch`) only
connects to it and hands over its stdin, stdout and stderr (``SCM_RIGHTS``);
the server forks a child that takes them as its own and serves plakar
directly (no relay: the launched process only waits for the child and exits
with its status, forwarding signals to it). When no server answers, the
connector is served in the launched process itself, as before.

Safety:
- one server per user and per version of the code: its socket lives in a
  0700 directory of the user (``$XDG_RUNTIME_DIR/kloset`` or
  ``/tmp/kloset-UID``, refused unless owned by the user and private), both
  ends check the other's uid, and the socket is named by a fingerprint of
  the code (executable, version, source files) that the server also checks
  in full on every request: an upgraded package never reaches an old server;
- the server runs with an empty environment (no secret of the process that
  started it); each child takes the environment, working directory, umask
  and arguments of its launcher;
- a child touches plakar's pipes only after its launcher has said go, so a
  launcher that gives up (server too slow, crashed) can still serve in
  process; a child exits when its launcher dies, and the launcher exits with
  the child's status (or 1 if it died without one);
- the server exits after ``KLOSET_FORK_SERVER_IDLE`` seconds without a
  request (default 60; 0 disables the fork server), on SIGTERM, or when its
  socket is taken away; a crashed or stopped server leaves at most a stale
  socket, replaced by the next server (a lock file says which one is alive).

This module is imported by every launch: it imports only what the launcher
needs (the server side imports the rest when it starts).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

IDLE_ENV = "KLOSET_FORK_SERVER_IDLE"
DEFAULT_IDLE = 60.0  # seconds without a request before the server exits
ACK_TIMEOUT = 3.0  # seconds a launcher waits for its child before serving itself
SERVER_ARG = "fork-server"
_MAGIC = b"KFS1"
# Request header: magic, fingerprint, kind, argv, environment, cwd (byte lengths), umask.
_HEADER = struct.Struct("!4sIIIIII")
_PID = struct.Struct("!cI")  # b"P", child pid
_EXIT = struct.Struct("!ci")  # b"X", exit status
_GO = b"G"
MAX_REQUEST = 16 << 20  # bytes: arguments and environment are far smaller


# -- where the server lives --

def socket_dir() -> str | None:
    """The user's private directory for fork server sockets, or None if there is
    no safe one (then connectors always start in process)."""
    uid = os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/") and _private(runtime, uid, create=False):
        folder = os.path.join(runtime, "kloset")
    else:
        folder = f"/tmp/kloset-{uid}"
    return folder if _private(folder, uid, create=True) else None


def _private(folder: str, uid: int, create: bool) -> bool:
    """Whether ``folder`` is a real directory of ``uid`` that no one else may enter."""
    import stat

    try:
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o700)
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and st.st_mode & 0o077 == 0


def socket_path(folder: str, app: str, fingerprint: str) -> str:
    """The socket of ``app``'s server for code ``fingerprint`` in ``folder``."""
    digest = zlib.crc32(fingerprint.encode(), zlib.adler32(fingerprint.encode()))
    return os.path.join(folder, f"{app}-{digest:08x}{len(fingerprint) & 0xFF:02x}.sock")


def idle_timeout() -> float:
    """Seconds the server waits for a request before exiting (0: no fork server)."""
    try:
        return max(0.0, float(os.environ.get(IDLE_ENV, DEFAULT_IDLE)))
    except ValueError:
        return DEFAULT_IDLE


def fingerprint(*packages: str) -> str:
    """What identifies the code a connector runs: the interpreter or frozen
    executable, and each package's files (names, sizes, modification times)."""
    exe = os.path.realpath(sys.executable)
    parts = [sys.version, exe]
    try:
        st = os.stat(exe)
        parts.append(f"{st.st_size}:{st.st_mtime_ns}")
    except OSError:
        pass
    for name in packages:
        module = sys.modules.get(name)
        folder = os.path.dirname(getattr(module, "__file__", "") or "")
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue  # a frozen build: the executable says it all
        for entry in entries:
            if entry.name.endswith(".py"):
                st = entry.stat()
                parts.append(f"{name}/{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


# -- the launched process --

def launch(kind: str, *, app: str, fingerprint: str, server_argv: Sequence[str],
           serve_here: Callable[[], NoReturn]) -> NoReturn:
    """Serve connector ``kind``: in a child of the fork server if one answers,
    else in this process (``serve_here``), after starting a server for the
    connectors that come next."""
    folder = socket_dir() if idle_timeout() > 0 else None
    if folder is not None:
        path = socket_path(folder, app, fingerprint)
        status = _forked(path, kind, fingerprint)
        if status is not None:
            os._exit(status)
        _start_server(server_argv, path)
    serve_here()


def _forked(path: str, kind: str, fingerprint: str) -> int | None:
    """Have the server at ``path`` serve ``kind`` on our stdio; its exit status,
    or None if no server took the job (nothing of our stdio was used then)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(ACK_TIMEOUT)
        conn.connect(path)
        if not _same_user(conn):
            return None
        _send_request(conn, kind, fingerprint)
        reply = _recv_exact(conn, _PID.size)
        tag, pid = _PID.unpack(reply) if reply else (b"", 0)
        if tag != b"P":
            return None
        conn.sendall(_GO)  # committed: from now on the child owns our stdio
    except OSError:
        conn.close()
        return None
    return _wait_child(conn, pid)


def _send_request(conn: socket.socket, kind: str, fingerprint: str) -> None:
    argv = b"\0".join(os.fsencode(a) for a in sys.argv)
    env = b"\0".join(k + b"=" + v for k, v in os.environb.items())
    try:
        cwd = os.fsencode(os.getcwd())
    except OSError:
        cwd = b"/"
    umask = os.umask(0o022)
    os.umask(umask)
    fp, kind_b = fingerprint.encode(), kind.encode()
    body = fp + kind_b + argv + env + cwd
    header = _HEADER.pack(_MAGIC, len(fp), len(kind_b), len(argv), len(env), len(cwd), umask)
    # The descriptors travel with the header; the body follows.
    conn.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                             struct.pack("3i", 0, 1, 2))])
    conn.sendall(body)


def _wait_child(conn: socket.socket, pid: int) -> int:
    """Forward our signals to the child until it reports its exit status."""
    import signal

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)

    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, forward)
    conn.settimeout(None)
    try:
        reply = _recv_exact(conn, _EXIT.size)
    except OSError:
        reply = b""
    if reply:
        tag, status = _EXIT.unpack(reply)
        if tag == b"X":
            return int(status) & 0xFF
    return 1  # the child died without a word: plakar sees a failed connector


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    """``n`` bytes, or b"" if the other end closes first."""
    data = b""
    while len(data) < n:
        more = conn.recv(n - len(data))
        if not more:
            return b""
        data += more
    return data


def _same_user(conn: socket.socket) -> bool:
    """Whether the process at the other end runs as our user (Linux; elsewhere the
    0700 directory is the only guard)."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return True
    creds = conn.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _start_server(argv: Sequence[str], path: str) -> None:
    """Start a fork server in the background for later connectors, unless one is
    alive or starting (its lock is held). It must hold none of our descriptors:
    plakar waits for its pipes to close."""
    import fcntl

    try:
        lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # a server is alive or starting
        fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
    import subprocess

    env = {k: v for k, v in os.environ.items() if k in (IDLE_ENV, "KLOSET_LOG_FORK_SERVER")}
    with contextlib.suppress(OSError):
        subprocess.Popen([*argv, SERVER_ARG, path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=env, cwd="/", start_new_session=True, close_fds=True)


# -- the server --

def run_server(path: str, *, fingerprint: str, preload: Callable[[], None],
               serve: Callable[[str, Callable[[int], NoReturn]], NoReturn]) -> NoReturn:
    """Be the fork server on ``path``: preload, then fork a child per request.

    ``serve(kind, exit)`` runs in each child, with plakar's stdio in place, and
    ends the child through ``exit(status)``.
    """
    import fcntl
    import signal

    folder = os.path.dirname(path)
    if not _private(folder, os.getuid(), create=False):
        os._exit(1)
    while True:
        lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os._exit(0)  # another server is alive or starting
        if _still_ours(path + ".lock", os.fstat(lock).st_ino):
            break
        os.close(lock)  # removed by a server that just exited: take the new one
    os.ftruncate(lock, 0)
    os.write(lock, str(os.getpid()).encode())  # for stop_servers
    preload()
    import gc

    # Objects created so far are shared with every child: keep the collector
    # from touching (and so copying) their pages.
    gc.collect()
    gc.freeze()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket of a server that died
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    bound = os.stat(path).st_ino

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener.settimeout(idle_timeout() or DEFAULT_IDLE)
    try:
        while _still_ours(path, bound):
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                break  # idle
            try:
                _fork_one(conn, listener, lock, fingerprint, serve)
            except Exception:  # a bad request: drop it; the launcher serves itself
                pass
            finally:
                conn.close()
    finally:
        if _still_ours(path, bound):
            with contextlib.suppress(OSError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.unlink(path + ".lock")  # still locked: no other server can hold it
        os._exit(0)


def _still_ours(path: str, bound: int) -> bool:
    """Whether our socket is still the one at ``path`` (not removed or replaced)."""
    try:
        return os.stat(path).st_ino == bound
    except OSError:
        return False


def _fork_one(conn: socket.socket, listener: socket.socket, lock: int, fingerprint: str,
              serve: Callable[[str, Callable[[int], NoReturn]], NoReturn]) -> None:
    conn.settimeout(ACK_TIMEOUT)
    if not _same_user(conn):
        return
    fds: list[int] = []
    try:
        header, ancillary, _flags, _addr = conn.recvmsg(
            _HEADER.size, socket.CMSG_SPACE(3 * struct.calcsize("i")))
        for level, ctype, data in ancillary:
            if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                usable = len(data) - len(data) % struct.calcsize("i")
                fds.extend(struct.unpack(f"{usable // 4}i", data[:usable]))
        if len(header) != _HEADER.size or len(fds) != 3:
            return
        magic, *sizes, umask = _HEADER.unpack(header)
        if magic != _MAGIC or sum(sizes) > MAX_REQUEST:
            return
        body = _recv_exact(conn, sum(sizes))
        if len(body) != sum(sizes):
            return
        fields, offset = [], 0
        for size in sizes:
            fields.append(body[offset:offset + size])
            offset += size
        fp, kind, argv, env, cwd = fields
        if fp.decode(errors="replace") != fingerprint:
            return  # another version of the code: never serve it
        pid = os.fork()
        if pid == 0:
            _child(conn, listener, lock, fds, kind.decode(), argv, env, cwd, umask, serve)
    finally:
        for fd in fds:
            os.close(fd)


def _child(conn: socket.socket, listener: socket.socket, lock: int, fds: list[int],
           kind: str, argv: bytes, env: bytes, cwd: bytes, umask: int,
           serve: Callable[[str, Callable[[int], NoReturn]], NoReturn]) -> NoReturn:
    import signal
    import threading

    try:
        listener.close()
        os.close(lock)
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        conn.sendall(_PID.pack(b"P", os.getpid()))
        if _recv_exact(conn, len(_GO)) != _GO:
            os._exit(0)  # the launcher gave up: plakar's pipes are not ours
        conn.settimeout(None)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        _adopt(kind, argv, env, cwd, umask)
    except BaseException:
        os._exit(1)

    def watch_launcher() -> None:
        # The launcher never sends more: EOF means it died (killed by plakar).
        with contextlib.suppress(OSError):
            conn.recv(1)
        os._exit(1)

    threading.Thread(target=watch_launcher, name="launcher-watch", daemon=True).start()

    def exit(status: int) -> NoReturn:
        with contextlib.suppress(OSError):
            conn.sendall(_EXIT.pack(b"X", status))
        os._exit(status)

    serve(kind, exit)


def _adopt(kind: str, argv: bytes, env: bytes, cwd: bytes, umask: int) -> None:
    """Take the launcher's arguments, environment, directory and umask."""
    import tempfile

    sys.argv = [os.fsdecode(a) for a in argv.split(b"\0")] if argv else [kind]
    os.environ.clear()
    for item in env.split(b"\0") if env else []:
        key, sep, value = item.partition(b"=")
        if sep and key:
            os.environb[key] = value
    tempfile.tempdir = None  # TMPDIR may differ from the server's
    try:
        os.chdir(os.fsdecode(cwd))
    except OSError:
        os.chdir("/")
    os.umask(umask)
    _name_process(kind)


def _name_process(kind: str) -> None:
    """Name the child after its role in ps and /proc (its command line is the server's)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        pr_set_name = 15
        libc.prctl(pr_set_name, f"kloset-{kind}"[:15].encode(), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def stop_servers(app: str) -> int:
    """Stop this user's fork servers of ``app`` (every version); how many were running."""
    import fcntl
    import signal

    folder = socket_dir()
    if folder is None:
        return 0
    stopped = 0
    for name in os.listdir(folder):
        if not (name.startswith(app + "-") and name.endswith(".sock.lock")):
            continue
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            continue  # no server holds it
        except OSError:
            pid = int(os.read(fd, 32) or b"0")
        finally:
            os.close(fd)
        if pid > 0:
            try:
                os.kill(pid, signal.SIGTERM)
                stopped += 1
            except OSError:
                pass
    return stopped
