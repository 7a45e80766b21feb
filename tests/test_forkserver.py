"""The fork server (kloset_sdk.forkserver), through a test connector spawned like plakar does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stdio_plugin import StdioPlugin

from kloset_sdk import forkserver
from kloset_sdk._proto import importer_pb2 as ipb
from kloset_sdk._proto import importer_pb2_grpc as ipb_grpc

APP = Path(__file__).resolve().parent / "fork_app.py"


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR: this test's servers live there, and die with it."""
    folder = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    folder.chmod(0o700)
    try:
        yield folder
    finally:
        for pid in server_pids(folder):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def server_pids(runtime: Path) -> list[int]:
    """PIDs written in the lock files of live servers under ``runtime``."""
    pids = []
    for lock in (runtime / "kloset").glob("fork-test-*.sock.lock"):
        text = lock.read_text().strip()
        if text.isdigit() and Path(f"/proc/{text}").exists():
            pids.append(int(text))
    return pids


def listening(runtime: Path) -> bool:
    """Whether a server accepts connections on a socket under ``runtime``."""
    for path in (runtime / "kloset").glob("fork-test-*.sock"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return True
            except OSError:
                continue
    return False


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {check}")


def env_for(runtime: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "XDG_RUNTIME_DIR": str(runtime),
            "FORK_TEST": "launcher-env", "SECRET_TOKEN": "s3cr3t-never-in-the-server",
            **extra}


class Launch:
    """``fork_app.py importer`` spawned with two pipes, Init answered."""

    def __init__(self, runtime: Path, version: str = "1", cwd: str = "/", umask: str = "022",
                 **extra: str) -> None:
        script = (f"cd {cwd} && umask {umask} && exec {sys.executable} {APP} "
                  f"--version {version} importer")
        self.plugin = StdioPlugin(["/bin/sh", "-c", script], env_for(runtime, **extra))
        self.stub = ipb_grpc.ImporterStub(self.plugin.channel)  # type: ignore[no-untyped-call]
        reply = self.stub.Init(ipb.InitRequest(proto="facts", config={}), timeout=30,
                               wait_for_ready=True)
        self.facts: dict[str, Any] = json.loads(reply.origin)
        self.name = reply.root.lstrip("/")

    @property
    def launcher(self) -> int:
        return self.plugin.proc.pid

    @property
    def forked(self) -> bool:
        return bool(self.facts["pid"] != self.launcher)

    def close(self) -> float:
        return self.plugin.close_stdin()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def forked_launch(runtime: Path, **kwargs: str) -> Launch:
    """A launch served by a fork server (the first ones start it)."""
    deadline = time.monotonic() + 15
    while True:
        launch = Launch(runtime, **kwargs)
        if launch.forked or time.monotonic() > deadline:
            return launch
        launch.close()
        time.sleep(0.1)


def test_later_starts_are_forked_with_the_launchers_setting(runtime: Path,
                                                            tmp_path: Path) -> None:
    first = Launch(runtime)
    assert not first.forked  # no server yet: served in process...
    assert first.close() < 1.0
    [server] = wait_for(lambda: server_pids(runtime))  # ...which started one
    wait_for(lambda: listening(runtime))
    later = Launch(runtime, cwd=str(tmp_path), umask="027", TMPDIR=str(tmp_path))
    assert later.forked and later.facts["ppid"] == server
    assert later.name == "kloset-importer"
    facts = later.facts
    assert (facts["cwd"], facts["umask"], facts["env"], facts["tmpdir"]) == (
        str(tmp_path), 0o027, "launcher-env", str(tmp_path))
    assert facts["argv"][-1] == "importer"
    # The whole Import works through the child.
    call = later.stub.Import(iter([]), timeout=10)
    records = [r for r in call]
    assert records[-1].finished and records[0].record.pathname == "/"
    assert later.close() < 1.0
    wait_for(lambda: not alive(facts["pid"]), timeout=2)


def test_the_server_keeps_nothing_of_its_starter(runtime: Path) -> None:
    Launch(runtime).close()
    [server] = wait_for(lambda: server_pids(runtime))
    environ = Path(f"/proc/{server}/environ").read_bytes()
    assert b"s3cr3t" not in environ and b"FORK_TEST" not in environ
    # No descriptor of plakar's pipes either: only /dev/null, its socket and lock.
    fd_dir = Path(f"/proc/{server}/fd")
    targets = {os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)}
    assert not [t for t in targets if t.startswith("pipe:")], targets
    assert Path(f"/proc/{server}/cwd").resolve() == Path("/")


def test_a_child_ends_with_its_launcher(runtime: Path) -> None:
    launch = forked_launch(runtime)
    child = launch.facts["pid"]
    launch.plugin.proc.kill()  # plakar killing the process it started
    launch.plugin.proc.wait()
    wait_for(lambda: not alive(child), timeout=3)
    launch.plugin.kill()


def test_signals_reach_the_child(runtime: Path) -> None:
    launch = forked_launch(runtime)
    child = launch.facts["pid"]
    launch.plugin.proc.send_signal(signal.SIGTERM)
    assert launch.plugin.proc.wait(5) != 0
    wait_for(lambda: not alive(child), timeout=3)
    launch.plugin.kill()


def test_a_dead_server_is_replaced(runtime: Path) -> None:
    forked_launch(runtime).close()
    [server] = server_pids(runtime)
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: not alive(server))
    # Its socket is left behind: the next start serves itself and starts another.
    again = Launch(runtime)
    assert not again.forked
    again.close()
    [new] = wait_for(lambda: server_pids(runtime))
    assert new != server
    wait_for(lambda: listening(runtime))
    later = Launch(runtime)
    assert later.forked and later.facts["ppid"] == new
    later.close()


def test_versions_never_share_a_server(runtime: Path) -> None:
    one = forked_launch(runtime, version="1")
    two = forked_launch(runtime, version="2")
    assert one.forked and two.forked
    assert one.facts["ppid"] != two.facts["ppid"]
    one.close()
    two.close()
    # A request with another fingerprint on a server's socket is turned down
    # before anything of the caller's is used.
    [path] = [p for p in (runtime / "kloset").glob("fork-test-*.sock")][:1]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(path))
        fingerprint, kind = b"not this code", b"importer"
        header = struct.pack("!4sIIIIII", b"KFS1", len(fingerprint), len(kind), 0, 0, 1, 0o22)
        conn.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                 struct.pack("3i", 0, 1, 2))])
        conn.sendall(fingerprint + kind + b"/")
        assert conn.recv(16) == b""  # closed without forking


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_other_users_cannot_reach_a_server(runtime: Path) -> None:
    forked_launch(runtime).close()
    [path] = list((runtime / "kloset").glob("fork-test-*.sock"))
    probe = ("import os, socket, sys\nos.setgid(65534); os.setuid(65534)\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n"
             "    print(type(e).__name__); sys.exit(0)\nprint('connected')\n")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.strip() == "PermissionError", out


def test_unsafe_directories_are_never_used(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "kloset").mkdir()
    (shared / "kloset").chmod(0o755)  # others may enter: refused
    uid = os.getuid()
    assert not forkserver._private(str(shared / "kloset"), uid, create=False)
    assert not forkserver._private(str(shared), uid, create=False)
    (tmp_path / "link").symlink_to(shared)
    assert not forkserver._private(str(tmp_path / "link"), uid, create=False)
    if uid == 0:
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 65534, 65534)
        assert not forkserver._private(str(other), uid, create=False)
    # A runtime directory that others may enter is not used: the private
    # /tmp/kloset-UID is, whatever XDG_RUNTIME_DIR says.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    assert forkserver.socket_dir() == f"/tmp/kloset-{uid}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")
    assert forkserver.socket_dir() == f"/tmp/kloset-{uid}"


def test_an_idle_server_exits(runtime: Path) -> None:
    launch = Launch(runtime, KLOSET_FORK_SERVER_IDLE="1")
    launch.close()
    [server] = wait_for(lambda: server_pids(runtime))
    wait_for(lambda: not alive(server), timeout=10)
    assert not list((runtime / "kloset").glob("fork-test-*"))  # socket and lock


def test_idle_zero_disables_it(runtime: Path) -> None:
    for _ in range(2):
        launch = Launch(runtime, KLOSET_FORK_SERVER_IDLE="0")
        assert not launch.forked
        launch.close()
    time.sleep(0.5)
    assert not server_pids(runtime)


def test_children_are_reaped(runtime: Path) -> None:
    launches = [forked_launch(runtime) for _ in range(3)]
    children = [launch.facts["pid"] for launch in launches]
    for launch in launches:
        launch.close()
    for pid in children:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)  # noqa: B023


def test_stop_servers(runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forked_launch(runtime).close()
    [server] = server_pids(runtime)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert forkserver.stop_servers("fork-test") == 1
    wait_for(lambda: not alive(server))
    assert not list((runtime / "kloset").glob("fork-test-*.sock"))
