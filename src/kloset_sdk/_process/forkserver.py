"""Start connectors in milliseconds: fork them from a preloaded server.

plakar starts a connector process for every command (a backup starts a
store, two importers, and its cache daemon a store of its own), and a
Python connector spends most of its start importing its libraries (the
Azure SDK alone takes ~0.15 s). So the first connector started also starts, in the
background, a *fork server*: a process that has imported everything once
and then waits on a Unix socket, with a *spare* child of it already waiting
in ``accept()``. Every later start (:func:`launch`) connects; the spare
answers (hello), and only then does the launcher send it its stdin, stdout,
stderr and working directory (``SCM_RIGHTS``), arguments, environment and
umask. The child takes them as its own and serves plakar directly (no
relay): the launched process only waits for it, forwards signals to it, and
exits with its status (or dies of the signal that killed it). When no server
answers at once, the connector is served in the launched process itself.

What a forked connector shares with the server, and what it never does:
- it is served only by a server of the same *context*
  (:mod:`~kloset_sdk._process.forkcontext`): the same namespaces, root, cgroup, uid,
  gids and groups, capability sets, no_new_privs, seccomp mode, resource
  limits, nice and scheduling, LSM label, loader environment, and the same
  code. Both are hashed into the socket's name, the server refuses to start
  unless its own context gives that name, and it checks every peer's context
  again from ``/proc/PID`` (pid from ``SO_PEERCRED``). A launcher started in
  another context (``unshare -n``, ``setpriv``, ``prlimit``, ``nice``, a
  systemd unit) starts a server of its own from inside that context;
- the server never reads what a launcher sends (only the spare that serves
  it does), and runs with an environment of a few settings (no secret);
- plakar's descriptors go only to a child that has answered; a stopped, hung
  or dying server delays a launch by at most ``HELLO_TIMEOUT`` before it is
  served in process (and a new server replaces that one), and never holds
  plakar's pipes.
- one server per user, context and code: its socket lives in a 0700
  directory of the user (``$XDG_RUNTIME_DIR/kloset`` or ``/tmp/kloset-UID``,
  refused unless owned by the user and private); both ends check the
  other's uid;
- the server exits after ``KLOSET_FORK_SERVER_IDLE`` seconds with no
  connector started or running (default 60; ``inf``: never; 0 disables the
  fork server), on SIGTERM, or when its socket is taken away.

This module is imported by every launch: it imports only what the launcher
needs (the server side, :mod:`~kloset_sdk._process.forkhost`, imports the rest).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys

from . import forkcontext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

IDLE_ENV = "KLOSET_FORK_SERVER_IDLE"
DEFAULT_IDLE = 60.0  # seconds without a connector before the server exits
SERVER_ARG = "fork-server"
# Seconds a launcher waits for the spare's hello before serving in process: a
# healthy spare answers in well under a millisecond; a loaded machine may
# take a few more to schedule it.
HELLO_TIMEOUT = 0.025
# Seconds a launcher waits for the child to take its settings once its
# descriptors are sent; past it the child is killed (it has touched nothing).
READY_TIMEOUT = 1.0
# Seconds to wait for the server's word on a child that died without
# reporting (killed by a signal).
STATUS_TIMEOUT = 1.0
# A server holding its lock without listening yet is starting (preloading)
# for at most this long; past it, it is replaced.
START_GRACE = 10.0
# A server that failed to start is not started again for this long.
FAILED_BACKOFF = 60.0
MAX_PATH = 107  # bytes of a Unix socket path (sun_path, NUL excluded)
MAX_REQUEST = 16 << 20  # bytes: arguments and environment are far smaller

# The wire (all integers big-endian):
#   launcher -> spare: IDENT (magic, length) + the code's fingerprint
#   spare -> launcher: HELLO (magic, child pid, flags) + SCM_RIGHTS: the
#       child's pidfd (flag 1), the read end of its status pipe; or REFUSED
#   launcher -> child: REQUEST (magic, sizes of kind, argv, environment; umask)
#       + SCM_RIGHTS: stdin, stdout, stderr, working directory; then the body
#   child -> launcher: READY, or ERROR (length) + a one-line message
#   launcher -> child: GO; child -> launcher, at its end: EXIT (status)
#   server -> launcher, on the status pipe: the child's wait status, once
#       the server has reaped it
_IDENT = struct.Struct("!4sI")
_HELLO = struct.Struct("!4sII")
_REQUEST = struct.Struct("!4sIIII")
_ERROR = struct.Struct("!cI")
_EXIT = struct.Struct("!ci")
_WAIT_STATUS = struct.Struct("!i")
IDENT_MAGIC, HELLO_MAGIC, REFUSED_MAGIC, REQUEST_MAGIC = b"KFI2", b"KFH2", b"KFN2", b"KFR2"
READY, ERROR, GO, EXIT = b"R", b"E", b"G", b"X"
HAS_PIDFD = 1
# Signals a launcher passes on to its child (unless it ignores them).
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")


# -- where the server lives --

def socket_dir() -> str | None:
    """The user's private directory for fork server sockets, or None if there is
    no safe one (then connectors always start in process)."""
    uid = os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/") and _private(runtime, uid, create=False):
        folder = os.path.join(runtime, "kloset")
        if _private(folder, uid, create=True):
            return folder
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


def socket_name(app: str, fingerprint: str, key: str) -> str:
    """The socket's file name of ``app``'s server for this code and context."""
    return f"{app}-{forkcontext.digest(fingerprint, key)}.sock"


def server_path(app: str, fingerprint: str, key: str) -> str | None:
    """Where the server of this code and context listens: in :func:`socket_dir`,
    or in ``/tmp/kloset-UID`` when that path would be too long for a socket."""
    name = socket_name(app, fingerprint, key)
    folder = socket_dir()
    if folder is not None and len(os.fsencode(os.path.join(folder, name))) > MAX_PATH:
        folder = f"/tmp/kloset-{os.getuid()}"
        if not _private(folder, os.getuid(), create=True):
            return None
    return None if folder is None else os.path.join(folder, name)


def idle_timeout() -> float:
    """Seconds the server waits with no connector before exiting (0: no fork
    server; ``inf``: it never idles out). Anything else than a number >= 0 is
    the default."""
    value = os.environ.get(IDLE_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_IDLE
    except ValueError:
        return DEFAULT_IDLE
    return seconds if seconds >= 0 else DEFAULT_IDLE  # NaN compares False too


def interpreter_options() -> list[str]:
    """The options this interpreter was started with (``-X importtime``, ``-O``...):
    a server must be started with them too, or its code fingerprint differs."""
    if getattr(sys, "frozen", False):
        return []
    args = getattr(sys, "orig_argv", [])[1:]
    options: list[str] = []
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg == "-" or arg.startswith(("-m", "-c", "--")):
            break
        options.append(arg)
        if arg in ("-X", "-W") and args:
            options.append(args.pop(0))
    return options


def fingerprint(*packages: str) -> str:
    """What identifies the code a connector runs (see
    :func:`~kloset_sdk._process.forkcontext.code_fingerprint`)."""
    return forkcontext.code_fingerprint(*packages)


# -- the launched process --

def launch(kind: str, *, app: str, fingerprint: str, server_argv: Sequence[str],
           serve_here: Callable[[], NoReturn]) -> NoReturn:
    """Serve connector ``kind``: in a child of the fork server if one answers,
    else in this process (``serve_here``), after starting a server for the
    connectors that come next."""
    if idle_timeout() > 0:
        key = forkcontext.process_key()
        path = server_path(app, fingerprint, key) if key is not None else None
        if path is not None:
            status = _forked(path, kind, fingerprint)
            if status is not None:
                _exit_as(status)
            _start_server(server_argv, path)
    serve_here()


def _forked(path: str, kind: str, fingerprint: str) -> int | None:
    """Have the server at ``path`` serve ``kind`` on our stdio: the child's exit
    code (-N if signal N killed it), or None if no child took the job (then
    nothing of our stdio is held by anyone else)."""
    try:
        # By descriptor: the child enters the very directory we are in.
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    child: tuple[int, int | None] | None = None
    status_fd = -1
    try:
        conn.settimeout(HELLO_TIMEOUT)
        conn.connect(path)
        server, uid = peer(conn)
        if uid != os.getuid() or stopped(server):
            return None
        ident = fingerprint.encode(errors="surrogateescape")
        conn.sendall(_IDENT.pack(IDENT_MAGIC, len(ident)) + ident)
        request = _request(kind)  # while the spare checks us
        hello, fds = recv_fds(conn, _HELLO.size, 2)
        magic, pid, flags = _HELLO.unpack(hello) if len(hello) == _HELLO.size else (b"", 0, 0)
        expected = 2 if flags & HAS_PIDFD else 1
        if magic != HELLO_MAGIC or len(fds) != expected:
            _close(fds)
            return None
        child = (pid, fds[0] if flags & HAS_PIDFD else None)
        status_fd = fds[-1]
        # The child has answered: from here on it, and only it, holds our stdio.
        conn.settimeout(READY_TIMEOUT)
        # The descriptors travel with the header; the body follows.
        conn.sendmsg([request[0]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                     struct.pack("4i", 0, 1, 2, cwd))])
        conn.sendall(request[1])
        if conn.recv(1) != READY:
            raise OSError("the child refused the job")
        conn.sendall(GO)  # committed: the child owns our stdio
    except OSError:
        if child is not None:
            _abandon(*child)
        if status_fd >= 0:
            os.close(status_fd)
        conn.close()
        return None
    finally:
        os.close(cwd)
    return _wait_child(conn, child[0], child[1], status_fd)


def peer(conn: socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end (for a client, the one
    that listens), from ``SO_PEERCRED``."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped, traced, dead or gone: it will not answer."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state in (b"T", b"t", b"Z", b"X")


def recv_fds(conn: socket.socket, size: int, most: int) -> tuple[bytes, list[int]]:
    """Up to ``size`` bytes and the descriptors that came with them (at most ``most``)."""
    data, ancillary, _flags, _addr = conn.recvmsg(
        size, socket.CMSG_SPACE(most * struct.calcsize("i")))
    fds: list[int] = []
    for level, ctype, cdata in ancillary:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            usable = len(cdata) - len(cdata) % 4
            fds.extend(struct.unpack(f"{usable // 4}i", cdata[:usable]))
    while data and len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            break
        data += more
    return data, fds


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _request(kind: str) -> tuple[bytes, bytes]:
    """The request's header and body: our arguments, environment and umask."""
    argv = b"\0".join(os.fsencode(a) for a in sys.argv)
    env = b"\0".join(k + b"=" + v for k, v in os.environb.items())
    umask = os.umask(0o022)
    os.umask(umask)
    kind_b = kind.encode()
    header = _REQUEST.pack(REQUEST_MAGIC, len(kind_b), len(argv), len(env), umask)
    return header, kind_b + argv + env


def _abandon(pid: int, pidfd: int | None) -> None:
    """Kill a child that got our descriptors but was never told to go (it has
    not touched them), and wait until it is gone, so that it holds none of
    plakar's pipes when we serve in process."""
    import select
    import signal

    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], READY_TIMEOUT)
            os.close(pidfd)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _wait_child(conn: socket.socket, pid: int, pidfd: int | None, status_fd: int) -> int:
    """Forward our signals to the child until it ends; its exit code (-N: signal N)."""
    import signal

    def forward(signum: int, _frame: Any) -> None:
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(pid, signum)
        except OSError:
            pass

    for name in FORWARDED:
        sig = getattr(signal, name, None)
        # A signal we were started ignoring (nohup) stays ignored, as it
        # would be for a connector served in process.
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, forward)
    conn.settimeout(None)
    try:
        reply = recv_exact(conn, _EXIT.size)
    except OSError:
        reply = b""
    if reply:
        tag, status = _EXIT.unpack(reply)
        if tag == EXIT:
            return int(status) & 0xFF
    return _reaped(pid, status_fd)


def _reaped(pid: int, status_fd: int) -> int:
    """How a child that died without a word ended: the server says (it reaps
    it), else /proc while it is a zombie; 1 if no one can tell."""
    import select

    try:
        if select.select([status_fd], [], [], STATUS_TIMEOUT)[0]:
            data = os.read(status_fd, _WAIT_STATUS.size)
            if len(data) == _WAIT_STATUS.size:
                return os.waitstatus_to_exitcode(_WAIT_STATUS.unpack(data)[0])
    except (OSError, ValueError):
        pass
    try:
        # A zombie's stat ends with its wait status (field 52, since Linux 3.5).
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        if fields[0] == b"Z" and len(fields) >= 50:
            return os.waitstatus_to_exitcode(int(fields[49]))
    except (OSError, IndexError, ValueError):
        pass
    return 1


def _exit_as(code: int) -> NoReturn:
    """Exit with ``code``, or die of signal ``-code`` (so plakar reports that
    signal, as it would for a connector served in process)."""
    if code >= 0:
        os._exit(code)
    import resource
    import signal

    sig = -code
    try:
        # The child may have dumped core: the launcher has nothing to add.
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
        signal.signal(sig, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)  # a signal whose default is not to terminate


def recv_exact(conn: socket.socket, n: int) -> bytes:
    """``n`` bytes, or b"" if the other end closes first."""
    data = b""
    while len(data) < n:
        more = conn.recv(n - len(data))
        if not more:
            return b""
        data += more
    return data


# -- starting a server --

def lock_path(path: str) -> str:
    """The server's lock file: held while it lives; says "PID" while it starts,
    "PID INODE" once it listens, "failed: why" if it could not start."""
    return path + ".lock"


def lock_state(fd: int) -> tuple[int, int, str]:
    """(pid, socket inode or 0, failure or "") written in a lock file."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace").strip()
    if text.startswith("failed:"):
        return 0, 0, text
    words = text.split()
    try:
        return int(words[0]), int(words[1]) if len(words) > 1 else 0, ""
    except (IndexError, ValueError):
        return 0, 0, ""


def _start_server(argv: Sequence[str], path: str) -> None:
    """Start a fork server in the background for later connectors, unless one
    is starting, or failed to start a short while ago. It must hold none of our
    descriptors: plakar waits for its pipes to close."""
    import fcntl
    import time

    if not _may_outlive_us():
        return
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    except OSError:
        return
    if fd >= 0:
        try:
            age = time.time() - os.fstat(fd).st_mtime
            pid, inode, failure = lock_state(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                held = False
            except OSError:
                held = True
            if held and not inode and not failure and age < START_GRACE and not stopped(pid):
                return  # starting
            if not held and (failure or (pid and not inode)) and age < FAILED_BACKOFF:
                return  # failed to start (or died starting): not again so soon
            # Free, or held by a server that did not answer: the new one checks.
        finally:
            os.close(fd)
    import subprocess

    with contextlib.suppress(OSError):
        subprocess.Popen([*argv, SERVER_ARG, path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=server_env(), cwd="/", start_new_session=True, close_fds=True)


def _may_outlive_us() -> bool:
    """Whether a server we start can serve later launchers: not if we are the
    init of our PID namespace (it dies with us: ``unshare -pf``), nor if our
    children start in another PID or time namespace than ours (``unshare -p``
    without fork: it would never be in our context)."""
    if os.getpid() == 1:
        return False
    for name in ("pid", "time"):
        try:
            if os.readlink(f"/proc/self/ns/{name}") != os.readlink(
                    f"/proc/self/ns/{name}_for_children"):
                return False
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


# Passed on to the server: its own settings, and what shapes how its
# interpreter and C library start (so that its context and code fingerprint
# are the launcher's). Never a secret.
_SERVER_ENV = (IDLE_ENV, "KLOSET_LOG_FORK_SERVER", "LANG", "LC_ALL", "LC_CTYPE",
               "LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "LD_LIBRARY_PATH_ORIG",
               "GLIBC_TUNABLES")
_SERVER_ENV_PREFIXES = ("PYTHON",)


def server_env() -> dict[str, str]:
    """The server's environment: taken from our initial one (/proc/self/environ),
    as the interpreter saw it before changing it (it sets LC_CTYPE when it
    coerces the C locale)."""
    try:
        with open("/proc/self/environ", "rb") as f:
            initial = f.read().split(b"\0")
    except OSError:
        initial = [k + b"=" + v for k, v in os.environb.items()]
    env = {}
    for item in initial:
        key, sep, value = os.fsdecode(item).partition("=")
        if sep and (key in _SERVER_ENV or key.startswith(_SERVER_ENV_PREFIXES)):
            env[key] = value
    # PyInstaller's bootloader set LD_LIBRARY_PATH to its own folder, first:
    # give the original (it does the same for the server).
    if "LD_LIBRARY_PATH_ORIG" in env:
        env["LD_LIBRARY_PATH"] = env.pop("LD_LIBRARY_PATH_ORIG")
    elif getattr(sys, "frozen", False):
        env.pop("LD_LIBRARY_PATH", None)
    return env


# -- the server --

def stop_servers(app: str | None, folder: str | None = None) -> int:
    """Stop this user's fork servers of ``app`` (every version and context; None:
    of every app) in ``folder`` (default: :func:`socket_dir`); how many were
    running."""
    import fcntl
    import signal

    folder = folder or socket_dir()
    if folder is None:
        return 0
    stopped_count = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if not (name.startswith(f"{app}-" if app else "") and name.endswith(".sock.lock")):
            continue
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                continue  # no server holds it
            except OSError:
                pid = lock_state(fd)[0]
        finally:
            os.close(fd)
        if pid > 0:
            try:
                os.kill(pid, signal.SIGTERM)
                stopped_count += 1
            except OSError:
                pass
    return stopped_count
