"""What a fork server must share with a launcher before it may serve it.

A child forked by the fork server runs with the server's confinement, not
with that of the process plakar started. So a launcher is served only by a
server whose *context* is its own: the same namespaces, root, cgroup,
credentials, capability sets, no_new_privs, seccomp mode, resource limits,
scheduling, LSM label and loader environment (:func:`process_key`), and the
same code (:func:`code_fingerprint`). Both are part of the server's socket
name, so a launcher only ever finds a server of its own context; the server
computes its own key when it starts (it must match its name) and checks each
peer's key again from ``/proc/PID`` (the pid from ``SO_PEERCRED``).

Every launch computes both: each costs a few dozen system calls and imports
nothing.
"""

from __future__ import annotations

import os
import sys
import zlib

# /proc/PID/ns/*: a launcher in another namespace (unshare -n, a container)
# never shares a server. pid_for_children and time_for_children differ from
# pid and time after an unshare(2) without fork: the server would start in
# the new namespace, not the launcher's.
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time",
              "time_for_children", "user", "uts")
# Lines of /proc/PID/status: credentials, capability sets, no_new_privs,
# seccomp (the kernel shows the filters' number, not what they allow: the
# cgroup of a systemd unit tells units apart), CPU and memory node affinity.
STATUS_FIELDS = frozenset((b"Uid", b"Gid", b"Groups", b"CapInh", b"CapPrm", b"CapEff",
                           b"CapBnd", b"CapAmb", b"NoNewPrivs", b"Seccomp",
                           b"Seccomp_filters", b"Cpus_allowed_list", b"Mems_allowed_list"))
# Environment read by the dynamic loader and the C library when the process
# started (LD_PRELOAD-based sandboxes and proxies). PyInstaller's bootloader
# rewrites LD_LIBRARY_PATH and keeps the original in LD_LIBRARY_PATH_ORIG.
LOADER_ENV = (b"LD_PRELOAD", b"LD_AUDIT", b"LD_LIBRARY_PATH", b"GLIBC_TUNABLES")
_ABSENT = (FileNotFoundError, ProcessLookupError)


def process_key(pid: int | str = "self") -> str | None:
    """The confinement of process ``pid`` as one string, or None when it cannot
    be read in full (the process is gone, or /proc hides it from us)."""
    base = f"/proc/{pid}/"
    parts: list[bytes] = []
    try:
        for name in NAMESPACES:
            try:
                parts.append(os.fsencode(os.readlink(base + "ns/" + name)))
            except _ABSENT:
                parts.append(name.encode() + b":-")  # a kernel without it
        root = os.stat(base + "root")
        parts.append(b"root:%d:%d" % (root.st_dev, root.st_ino))
        for line in _read(base + "status").split(b"\n"):
            if line.partition(b":")[0] in STATUS_FIELDS:
                parts.append(line)
        parts.append(_read(base + "limits"))
        parts.append(_read(base + "cgroup"))
        # /proc/PID/stat after the command name: state is field 3; nice is
        # 19, rt_priority 40, policy 41.
        stat = _read(base + "stat").rpartition(b")")[2].split()
        parts.append(b"sched:" + b":".join((stat[16], stat[37], stat[38])))
        parts.append(b"oom:" + _read(base + "oom_score_adj").strip())
        parts.append(b"lsm:" + _optional(base + "attr/current").rstrip(b"\0\n"))
        parts.append(_loader_env(_read(base + "environ")))
    except (OSError, IndexError):
        return None
    return b"\n".join(parts).decode(errors="surrogateescape")


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _optional(path: str) -> bytes:
    """A /proc file that may be missing or unsupported (no LSM): empty then."""
    try:
        return _read(path)
    except _ABSENT:
        return b""
    except OSError as err:
        import errno

        if err.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return b""
        raise


def _loader_env(environ: bytes) -> bytes:
    found = {}
    for item in environ.split(b"\0"):
        key, _, value = item.partition(b"=")
        if key in LOADER_ENV or key == b"LD_LIBRARY_PATH_ORIG":
            found[key] = value
    if b"LD_LIBRARY_PATH_ORIG" in found:
        found[b"LD_LIBRARY_PATH"] = found.pop(b"LD_LIBRARY_PATH_ORIG")
    return b"env:" + b"\0".join(k + b"=" + found[k] for k in LOADER_ENV if k in found)


def code_fingerprint(*packages: str) -> str:
    """What identifies the code a connector runs and how the interpreter runs it.

    A frozen build is its executable (its folder is named by the build's
    digest). Otherwise: the interpreter and its options, every file of each
    of ``packages`` (name, size, modification time, ``_proto/`` and schemas
    included), and the distributions installed on ``sys.path`` (an upgraded
    dependency is another fingerprint)."""
    exe = os.path.realpath(sys.executable)
    parts = [sys.version, exe, sys.getfilesystemencoding(), repr(tuple(sys.flags)),
             repr(sorted(sys._xoptions.items()))]
    try:
        st = os.stat(exe)
        parts.append(f"{st.st_size}:{st.st_mtime_ns}")
    except OSError:
        pass
    if getattr(sys, "frozen", False):
        return "\n".join(parts)
    for name in packages:
        module = sys.modules.get(name)
        folder = os.path.dirname(getattr(module, "__file__", "") or "")
        if folder:
            _files(folder, name, parts)
    # sys.path[0] is the script's folder (or the working directory): not
    # code. Installed distributions are in the site-packages folders.
    parts.append(repr(sys.path[1:]))
    for entry in dict.fromkeys(sys.path[1:]):
        if not entry.endswith("-packages"):
            continue
        try:
            with os.scandir(entry) as it:
                names = sorted(e.name for e in it if e.name.endswith(
                    (".dist-info", ".egg-info", ".egg-link", ".pth")))
            mtime = os.stat(entry).st_mtime_ns
        except OSError:
            continue
        parts.append(f"{entry}:{mtime}:" + ",".join(names))
    return "\n".join(parts)


def _files(folder: str, prefix: str, parts: list[str]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name == "__pycache__":
            continue
        if entry.is_dir(follow_symlinks=False):
            _files(entry.path, f"{prefix}/{entry.name}", parts)
        else:
            try:
                st = entry.stat()
            except OSError:
                continue
            parts.append(f"{prefix}/{entry.name}:{st.st_size}:{st.st_mtime_ns}")


def digest(*texts: str) -> str:
    """A short name for ``texts`` (64 bits: the server checks the full values)."""
    data = "\0".join(texts).encode(errors="surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"
