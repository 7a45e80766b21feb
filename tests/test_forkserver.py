"""The fork server (kloset_sdk._process.forkserver), through a test connector spawned
like plakar does.

Every launch here is real: ``tests/fork_app.py`` started by a shell with two
pipes (plakar's way), sometimes under ``unshare``, ``setpriv``, ``prlimit`` or
``nice``; its Init answers with facts about the process that served it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from azblob_helpers import new_container, pk
from azurite import Azurite
from fork_helpers import (
    alive,
    kill_processes_of,
    occurrences,
    pipe_inodes,
    spare_of,
    stdout_ends,
    wait_for,
)
from kloset_grpc import importer_pb2_grpc as ipb_grpc
from plakar_env import PlakarEnv, output, snapshot_id
from stdio_plugin import StdioPlugin

from kloset_sdk._process import forkcontext, forkserver
from kloset_sdk._proto import importer_pb2 as ipb

APP = Path(__file__).resolve().parent / "fork_app.py"
ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root")


def _tool(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(name) is None, reason=f"{name} is not installed")


# -- helpers --

@pytest.fixture
def runtime() -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR: this test's servers live there, and die with it."""
    folder = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    folder.chmod(0o700)
    try:
        yield folder
    finally:
        kill_processes_of(folder)
        shutil.rmtree(folder, ignore_errors=True)


def locks(runtime: Path, app: str = "fork-test") -> list[Path]:
    return sorted((runtime / "kloset").glob(f"{app}-*.sock.lock"))


def server_pids(runtime: Path, app: str = "fork-test") -> list[int]:
    """PIDs written in the lock files of live servers under ``runtime``."""
    pids = []
    for lock in locks(runtime, app):
        words = lock.read_text().split()[:1]
        if words and words[0].isdigit() and int(words[0]) > 1 and alive(int(words[0])):
            pids.append(int(words[0]))
    return pids


def sockets(runtime: Path, app: str = "fork-test") -> list[Path]:
    return sorted((runtime / "kloset").glob(f"{app}-*.sock"))


def listening(runtime: Path, app: str = "fork-test") -> bool:
    """Whether a server accepts connections on a socket under ``runtime``."""
    for path in sockets(runtime, app):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return True
            except OSError:
                continue
    return False


def starts(runtime: Path) -> int:
    """How many servers fork_app started (each appends to SOCKET.starts)."""
    return sum(len(p.read_text().split()) for p in (runtime / "kloset").glob("*.starts"))


def env_for(runtime: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "XDG_RUNTIME_DIR": str(runtime),
            "FORK_TEST": "launcher-env", "SECRET_TOKEN": "s3cr3t-never-in-the-server",
            **extra}


def command(version: str = "1", app: str = "fork-test", cwd: str = "/", umask: str = "022",
            wrapper: Sequence[str] = (), before: str = "", options: Sequence[str] = (),
            ) -> list[str]:
    """A shell that enters ``cwd``, sets ``umask`` and execs the launcher
    (through ``wrapper``; ``options`` for Python), as plakar spawns a connector."""
    launcher = shlex.join([*wrapper, sys.executable, *options, str(APP), "--app", app,
                           "--version", version, "importer"])
    return ["/bin/sh", "-c", f"cd {shlex.quote(cwd)} && {before}umask {umask} && "
            f"exec {launcher}"]


class Launch:
    """``fork_app.py importer`` spawned with two pipes, Init answered."""

    def __init__(self, runtime: Path, version: str = "1", app: str = "fork-test",
                 cwd: str = "/", umask: str = "022", wrapper: Sequence[str] = (),
                 before: str = "", options: Sequence[str] = (), **extra: str) -> None:
        self.plugin = StdioPlugin(command(version, app, cwd, umask, wrapper, before, options),
                                  env_for(runtime, **extra))
        self.stub = ipb_grpc.ImporterStub(self.plugin.channel)  # type: ignore[no-untyped-call]
        try:
            reply = self.stub.Init(ipb.InitRequest(proto="facts", config={}), timeout=30,
                                   wait_for_ready=True)
        except grpc.RpcError:
            self.plugin.kill()
            raise AssertionError(f"Init failed: {self.plugin.stderr}") from None
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


def forked_launch(runtime: Path, **kwargs: Any) -> Launch:
    """A launch served by a fork server (the first ones start it)."""
    deadline = time.monotonic() + 20
    while True:
        launch = Launch(runtime, **kwargs)
        if launch.forked or time.monotonic() > deadline:
            assert launch.forked, "no fork server served a launch"
            return launch
        launch.close()
        time.sleep(0.1)


def host_server(runtime: Path, **kwargs: Any) -> int:
    """Start a server with plain launches; its pid."""
    forked_launch(runtime, **kwargs).close()
    [server] = server_pids(runtime, kwargs.get("app", "fork-test"))
    return server


def ending(runtime: Path, config: dict[str, str], **extra: str) -> StdioPlugin:
    """A launch whose Init makes the connector end itself (fork_app's config);
    the launcher has exited when this returns."""
    plugin = StdioPlugin(command(), env_for(runtime, **extra))
    stub = ipb_grpc.ImporterStub(plugin.channel)  # type: ignore[no-untyped-call]
    call = stub.Init.future(ipb.InitRequest(proto="facts", config=config), timeout=30,
                            wait_for_ready=True)
    plugin.proc.wait(30)
    plugin.channel.close()  # the relay keeps the connection: the call ends here
    with pytest.raises((grpc.RpcError, grpc.FutureCancelledError)):
        call.result()
    plugin.kill()
    return plugin


def client(runtime: Path, mode: str, version: str = "1", wrapper: Sequence[str] = (),
           path: Path | None = None) -> dict[str, Any]:
    """fork_app's protocol client against the (only) server's socket."""
    if path is None:
        [path] = sockets(runtime)
    argv = [*wrapper, sys.executable, str(APP), "--version", version, "client", str(path), mode]
    out = subprocess.run(argv, env=env_for(runtime), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


# -- what a forked connector inherits --

def test_later_starts_are_forked_with_the_launchers_setting(runtime: Path,
                                                            tmp_path: Path) -> None:
    first = Launch(runtime)
    assert not first.forked  # no server yet: served in process...
    assert first.close() < 1.0
    [server] = wait_for(lambda: server_pids(runtime))  # ...which started one
    wait_for(lambda: listening(runtime))
    later = forked_launch(runtime, cwd=str(tmp_path), umask="027", TMPDIR=str(tmp_path))
    assert later.facts["ppid"] == server
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
    launch = Launch(runtime)
    pipes = pipe_inodes(launch.launcher)
    [server] = wait_for(lambda: server_pids(runtime))
    wait_for(lambda: listening(runtime))
    launch.close()
    environ = Path(f"/proc/{server}/environ").read_bytes()
    assert b"s3cr3t" not in environ and b"FORK_TEST" not in environ
    # No descriptor of plakar's pipes either.
    assert pipes and not pipes & pipe_inodes(server)
    assert Path(f"/proc/{server}/cwd").resolve() == Path("/")


def in_process_facts(runtime: Path, **kwargs: Any) -> dict[str, Any]:
    """What a launch served in its own process sees (the fork server disabled)."""
    launch = Launch(runtime, KLOSET_FORK_SERVER_IDLE="0", **kwargs)
    assert not launch.forked
    launch.close()
    return launch.facts


def test_time_zone_and_locale_are_the_launchers(runtime: Path) -> None:
    host_server(runtime)  # started with no TZ, no locale
    for env in ({"TZ": "UTC-9"}, {"TZ": "UTC+3", "LC_ALL": "C.UTF-8"}, {"LC_ALL": "C"},
                {"LANG": "C.UTF-8", "TZ": "UTC-5:30"}):
        launch = forked_launch(runtime, **env)
        launch.close()
        expected = in_process_facts(runtime, **env)
        assert (launch.facts["gmtoff"], launch.facts["ctype"]) == (
            expected["gmtoff"], expected["ctype"]), env
    assert forked_launch(runtime, TZ="UTC-9").facts["gmtoff"] == 9 * 3600


def test_a_deleted_working_directory_is_kept(runtime: Path, tmp_path: Path) -> None:
    """The working directory goes by descriptor: one removed before the
    launch is still the one the child is in (as it would be in process)."""
    host_server(runtime)
    gone = shlex.quote(str(tmp_path / "gone"))
    before = f"mkdir {gone} && cd {gone} && rmdir {gone} && "
    launch = forked_launch(runtime, cwd=str(tmp_path), before=before)
    assert launch.facts["cwd"] == f"{tmp_path}/gone (deleted)"
    launch.close()
    assert in_process_facts(runtime, cwd=str(tmp_path), before=before)["cwd"] == (
        f"{tmp_path}/gone (deleted)")


def test_a_directory_the_child_cannot_enter_is_refused_in_one_line(runtime: Path) -> None:
    host_server(runtime)
    answer = client(runtime, "badcwd")
    assert answer["magic"] == "KFH2"
    assert answer["reply"] == ("Ecannot take the launcher's settings: "
                               "[Errno 20] Not a directory"), answer


# -- same confinement, or no sharing --

# wrapper, the fact it changes, the value that fact must then have.
CONFINED = {
    "setpriv --no-new-privs": (["setpriv", "--no-new-privs"],
                               lambda f: f["status"]["NoNewPrivs"], "1"),
    "setpriv --bounding-set -all": (["setpriv", "--bounding-set", "-all"],
                                    lambda f: f["status"]["CapBnd"], "0000000000000000"),
    "setpriv --groups 4242": (["setpriv", "--groups", "4242"],
                              lambda f: f["status"]["Groups"], "4242"),
    "prlimit --nofile=300:300": (["prlimit", "--nofile=300:300"], lambda f: f["nofile"],
                                 [300, 300]),
    "nice -n 7": (["nice", "-n", "7"], lambda f: f["nice"], 7),
}


@ROOT_ONLY
@pytest.mark.parametrize("name", list(CONFINED))
def test_a_confined_launcher_is_served_only_in_its_own_context(runtime: Path,
                                                              name: str) -> None:
    wrapper, fact, value = CONFINED[name]
    if shutil.which(wrapper[0]) is None:
        pytest.skip(f"{wrapper[0]} is not installed")
    host = host_server(runtime)
    plain = forked_launch(runtime)
    assert plain.facts["ppid"] == host and fact(plain.facts) != value
    plain.close()
    # Never by the server started elsewhere...
    confined = Launch(runtime, wrapper=wrapper)
    assert confined.facts["ppid"] != host and fact(confined.facts) == value
    confined.close()
    # ...but by one started from inside the same context, itself confined so.
    again = forked_launch(runtime, wrapper=wrapper)
    assert fact(again.facts) == value
    server = again.facts["ppid"]
    assert server != host and server in server_pids(runtime)
    again.close()
    plain = forked_launch(runtime)
    assert plain.facts["ppid"] == host  # the host's launchers keep theirs
    plain.close()


@ROOT_ONLY
@_tool("unshare")
@_tool("nsenter")
def test_a_launcher_in_another_network_namespace(runtime: Path) -> None:
    host = host_server(runtime)
    host_net = os.readlink("/proc/self/ns/net")
    confined = Launch(runtime, wrapper=["unshare", "-n"])
    assert confined.facts["ppid"] != host and confined.facts["net"] != host_net
    confined.close()
    # Launchers of one namespace (as under one `unshare -n plakar ...`) share
    # a server started in it.
    holder = subprocess.Popen(["unshare", "-n", "sleep", "60"])
    try:
        net = wait_for(lambda: os.readlink(f"/proc/{holder.pid}/ns/net") != host_net
                       and os.readlink(f"/proc/{holder.pid}/ns/net"))
        inside = ["nsenter", f"--net=/proc/{holder.pid}/ns/net"]
        again = forked_launch(runtime, wrapper=inside)
        assert again.facts["net"] == net and again.facts["ppid"] != host
        assert os.readlink(f"/proc/{again.facts['ppid']}/ns/net") == net
        again.close()
    finally:
        holder.kill()
        holder.wait()


@ROOT_ONLY
@_tool("unshare")
@pytest.mark.plakar
@pytest.mark.azurite
def test_a_backup_under_unshare_n_cannot_reach_the_hosts_azurite(
        azplakar: PlakarEnv, azurite: Azurite) -> None:
    """The real plakar and the development package: a backup from Azurite on
    the host's loopback works, and leaves a fork server running; the same
    backup under ``unshare -n`` must fail to reach Azurite (its connector is
    really confined), and adds no snapshot."""
    container = new_container(azurite, "confined")
    container.upload_blob("a.txt", b"hello")
    pk(azplakar, "source", "add", "src", f"azblob://{container.container_name}",
       f"connection_string={azurite.connection_string}")
    store = str(azplakar.root / "store")
    pk(azplakar, "at", store, "create")
    snapshot_id(pk(azplakar, "at", store, "backup", "@src"))
    runtime = Path(azplakar.env["XDG_RUNTIME_DIR"])
    wait_for(lambda: listening(runtime, "plakar-azblob"))
    proc = subprocess.run(["unshare", "-n", azplakar.bin, "at", store, "backup", "@src"],
                          env=azplakar.env, cwd=azplakar.root, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and "network is unreachable" in output(proc), output(proc)
    assert len(pk(azplakar, "at", store, "ls").stdout.splitlines()) == 1


@ROOT_ONLY
@_tool("setpriv")
@_tool("prlimit")
def test_the_server_checks_each_peer_again(runtime: Path) -> None:
    """A launcher of another context that reaches a server's socket anyway (the
    name is only a hint) is refused from what /proc says of it."""
    host_server(runtime)
    assert client(runtime, "hello")["magic"] == "KFH2"
    for wrapper in (["setpriv", "--no-new-privs"], ["prlimit", "--nofile=300:300"],
                    ["nice", "-n", "3"]):
        assert client(runtime, "hello", wrapper=wrapper)["magic"] == "KFN2", wrapper


def test_versions_never_share_a_server(runtime: Path) -> None:
    one = forked_launch(runtime, version="1")
    two = forked_launch(runtime, version="2")
    assert one.facts["ppid"] != two.facts["ppid"]
    one.close()
    two.close()
    # Another code on a server's socket is turned down before anything else.
    path = next(p for p in sockets(runtime) if one.facts["ppid"] == server_of(p))
    assert client(runtime, "hello", version="3", path=path)["magic"] == "KFN2"
    assert client(runtime, "hello", version="1", path=path)["magic"] == "KFH2"


def test_interpreter_options_are_part_of_the_code(runtime: Path) -> None:
    """A launcher run with other interpreter options (-X importtime, -O) gets a
    server started with them, and never a plain one."""
    host = host_server(runtime)
    launch = forked_launch(runtime, options=["-X", "importtime", "-O"])
    server = launch.facts["ppid"]
    launch.close()
    assert server != host
    assert b"\0-X\0importtime\0-O\0" in Path(f"/proc/{server}/cmdline").read_bytes()
    assert starts(runtime) == 2


def server_of(socket_path: Path) -> int:
    return int(Path(str(socket_path) + ".lock").read_text().split()[0])


def test_the_hello_gives_a_pidfd_of_the_child(runtime: Path) -> None:
    """Signals reach the child by pidfd, not by a pid that another namespace
    (or a recycled pid) would make wrong."""
    host_server(runtime)
    answer = client(runtime, "hello")
    assert answer["magic"] == "KFH2" and answer["fds"] == 2
    assert answer["pidfd_pid"] == answer["pid"] > 0


# -- hand-off after readiness --

@pytest.mark.faults
@pytest.mark.parametrize("what", ["server and spare", "spare only"])
def test_a_stopped_server_never_holds_plakars_pipes(runtime: Path, what: str) -> None:
    server = host_server(runtime)
    spare = spare_of(server)
    stopped = [server, spare] if what == "server and spare" else [spare]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        # Served in its own process, the stopped processes holding none of it.
        launch = Launch(runtime)
        assert not launch.forked
        pipes = pipe_inodes(launch.launcher)
        assert pipes and not any(pipes & pipe_inodes(pid) for pid in stopped)
        assert launch.close() < 5
        status, took = stdout_ends(command(), env_for(runtime))
        assert status == 0 and took >= 0, "a stopped process kept the launcher's stdout"
        # A new server took over: the next launches are forked again.
        later = forked_launch(runtime)
        assert later.facts["ppid"] not in (server, spare)
        later.close()
    finally:
        for pid in stopped:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
    # Resumed, it sees its socket taken over and leaves.
    wait_for(lambda: not alive(server), timeout=15)


@pytest.mark.faults
@pytest.mark.parametrize("how", ["killed", "socket deleted"])
def test_a_server_out_of_reach_is_replaced_at_once(runtime: Path, how: str) -> None:
    server = host_server(runtime)
    if how == "killed":
        os.kill(server, signal.SIGKILL)  # its socket is left behind
        wait_for(lambda: not alive(server))
    else:
        [path] = sockets(runtime)
        path.unlink()
    # The next start serves itself and starts another, which takes over at once.
    again = Launch(runtime)
    assert not again.forked
    again.close()
    later = forked_launch(runtime)
    assert later.facts["ppid"] != server
    later.close()
    wait_for(lambda: not alive(server), timeout=15)  # it saw its socket gone
    assert starts(runtime) == 2 and len(server_pids(runtime)) == 1


# -- no secret kept --

@ROOT_ONLY
def test_no_secret_is_kept_by_the_server(runtime: Path) -> None:
    server = host_server(runtime)
    marker = f"AZURE_CLIENT_SECRET-{uuid.uuid4().hex}"
    launch = forked_launch(runtime, AZURE_CLIENT_SECRET=marker, FORK_TEST=marker)
    child = launch.facts["pid"]
    assert launch.facts["env"] == marker
    # The scan finds it where it is (the child that serves this launcher)...
    assert occurrences(child, marker.encode()) > 0
    launch.close()
    wait_for(lambda: not alive(child))
    # ...and never in the server, nor in the spare waiting for the next one.
    for pid in (server, spare_of(server)):
        assert occurrences(pid, marker.encode()) == 0, pid


# -- exact lifecycle --

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
    # The child dies of it, and so does its launcher (as a connector served
    # in process would).
    assert launch.plugin.proc.wait(5) == -signal.SIGTERM
    wait_for(lambda: not alive(child), timeout=3)
    launch.plugin.kill()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGTERM])
def test_a_child_killed_by_a_signal_kills_its_launcher_with_it(runtime: Path,
                                                              sig: int) -> None:
    host_server(runtime)
    forked = ending(runtime, {"signal": str(int(sig))})
    alone = ending(runtime, {"signal": str(int(sig))}, KLOSET_FORK_SERVER_IDLE="0")
    assert forked.proc.returncode == alone.proc.returncode == -sig


def test_an_exit_status_without_a_word_is_the_childs(runtime: Path) -> None:
    host_server(runtime)
    assert ending(runtime, {"exit": "7"}).proc.returncode == 7


@pytest.mark.faults
def test_a_signal_is_reported_while_the_server_is_stopped(runtime: Path) -> None:
    """The server reaps children and reports their status; stopped, it cannot:
    the launcher reads the zombie's status from /proc instead."""
    server = host_server(runtime)
    launch = forked_launch(runtime)
    os.kill(server, signal.SIGSTOP)
    try:
        os.kill(launch.facts["pid"], signal.SIGKILL)
        assert launch.plugin.proc.wait(10) == -signal.SIGKILL
    finally:
        os.kill(server, signal.SIGCONT)
        launch.plugin.kill()


def test_children_are_reaped(runtime: Path) -> None:
    launches = [forked_launch(runtime) for _ in range(3)]
    children = [launch.facts["pid"] for launch in launches]
    for launch in launches:
        launch.close()
    for pid in children:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)  # noqa: B023


def test_an_idle_server_exits_once_its_children_end(runtime: Path) -> None:
    launch = forked_launch(runtime, KLOSET_FORK_SERVER_IDLE="1")
    [server] = server_pids(runtime)
    time.sleep(2.5)
    assert alive(server)  # a connector it forked still runs
    launch.close()
    wait_for(lambda: not alive(server), timeout=10)
    wait_for(lambda: not alive(launch.facts["pid"]))
    assert not sockets(runtime) and not locks(runtime)


def in_process_launches(runtime: Path, times: int, pause: float = 0.0, **kwargs: Any) -> None:
    """``times`` launches, each served in its own process."""
    for _ in range(times):
        launch = Launch(runtime, **kwargs)
        assert not launch.forked
        launch.close()
        time.sleep(pause)


def test_idle_zero_disables_it(runtime: Path) -> None:
    in_process_launches(runtime, 2, KLOSET_FORK_SERVER_IDLE="0")
    time.sleep(0.5)
    assert not server_pids(runtime) and starts(runtime) == 0


@pytest.mark.parametrize("idle", ["inf", "soon", "-3", "nan"])
def test_odd_idle_settings_start_one_server(runtime: Path, idle: str) -> None:
    """``inf`` keeps the server; other values than a number >= 0 are the
    default: either way one server, no respawn at every launch."""
    for _ in range(3):
        forked_launch(runtime, KLOSET_FORK_SERVER_IDLE=idle).close()
    assert starts(runtime) == 1 and len(server_pids(runtime)) == 1


def test_a_socket_path_too_long_goes_to_tmp(runtime: Path) -> None:
    """A runtime directory too deep for a socket (108 bytes): the server lives
    in /tmp/kloset-UID; one server, no respawn at every launch."""
    deep = runtime / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    app = f"ft{uuid.uuid4().hex[:8]}"
    fallback = Path(f"/tmp/kloset-{os.getuid()}")
    try:
        for _ in range(3):
            forked_launch(runtime, app=app, XDG_RUNTIME_DIR=str(deep)).close()
        pids = [int(p.read_text().split()[0]) for p in fallback.glob(f"{app}-*.sock.lock")]
        assert len(pids) == 1 and alive(pids[0])
        assert sum(len(p.read_text().split()) for p in fallback.glob(f"{app}-*.starts")) == 1
        assert not list(deep.glob(f"kloset/{app}-*"))
    finally:
        forkserver.stop_servers(app, str(fallback))
        time.sleep(0.5)
        for leftover in fallback.glob(f"{app}-*"):
            leftover.unlink()


def test_a_server_that_cannot_start_is_not_started_at_every_launch(runtime: Path) -> None:
    in_process_launches(runtime, 3, pause=0.3, version="fail")
    wait_for(lambda: not server_pids(runtime))
    assert starts(runtime) == 1
    [lock] = locks(runtime)
    assert lock.read_text().startswith(
        "failed: preloading failed: RuntimeError: this version cannot preload")


@ROOT_ONLY
@_tool("unshare")
def test_no_server_is_started_where_it_could_not_serve(runtime: Path) -> None:
    """A server started by the init of a PID namespace dies with it: none is
    started, at any launch. (After unshare -p without fork, the launcher's
    children would start in another namespace: none is started either; a
    connector cannot run there anyway, its threads refused by the kernel.)"""
    for _ in range(2):
        launch = Launch(runtime, wrapper=["unshare", "-pf"])
        assert launch.facts["pid"] == 1  # the launcher itself, init of its namespace
        launch.close()
    time.sleep(0.5)
    assert starts(runtime) == 0


def test_stale_files_are_removed(runtime: Path) -> None:
    folder = runtime / "kloset"
    folder.mkdir(mode=0o700)
    old = time.time() - 3600
    stale = {
        # an older build's server, killed (the previous naming)
        "fork-test-0123456789.sock": "", "fork-test-0123456789.sock.lock": "99999999",
        # another context's, gone (no lock left), and a lock without socket
        "fork-test-aaaaaaaaaaaaaaaa.sock": "",
        "fork-test-bbbbbbbbbbbbbbbb.sock.lock": "99999998 123",
        # a failed start, long ago; a temporary socket of a dead server
        "other-app-cccccccccccccccc.sock.lock": "failed: something",
        ".99999997.tmp": "",
    }
    for name, text in stale.items():
        (folder / name).write_text(text)
        os.utime(folder / name, (old, old))
    recent = folder / "fork-test-dddddddddddddddd.sock.lock"
    recent.write_text("failed: a recent failure holds new starts back")
    host_server(runtime)
    left = {p.name for p in folder.iterdir()}
    assert not left & set(stale), left
    assert recent.name in left


# -- the fingerprint of a development install --

def test_the_fingerprint_covers_every_file_and_dependency(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "src" / "fp_pkg"
    (pkg / "_proto").mkdir(parents=True)
    (pkg / "schemas").mkdir()
    for rel in ("__init__.py", "_proto/x_pb2.py", "schemas/a.json"):
        (pkg / rel).write_text("1")
    site = tmp_path / "site-packages"
    (site / "dep-1.0.dist-info").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(sys, "path", [sys.path[0], *sys.path, str(site)])
    __import__("fp_pkg")
    try:
        seen = {forkcontext.code_fingerprint("fp_pkg")}
        for rel in ("_proto/x_pb2.py", "schemas/a.json"):
            (pkg / rel).write_text("22")
            seen.add(forkcontext.code_fingerprint("fp_pkg"))
        (site / "dep-1.0.dist-info").rename(site / "dep-1.1.dist-info")
        seen.add(forkcontext.code_fingerprint("fp_pkg"))
        assert len(seen) == 4
        assert "dep-1.1.dist-info" in forkcontext.code_fingerprint("fp_pkg")
    finally:
        sys.modules.pop("fp_pkg", None)


def test_the_context_key_reads_what_confines_a_process() -> None:
    key = forkcontext.process_key()
    assert key is not None and key == forkcontext.process_key(os.getpid())
    for part in ("net:[", "mnt:[", "user:[", "CapBnd:", "NoNewPrivs:", "Seccomp:",
                 "Max open files", "sched:", "root:"):
        assert part in key, part
    assert forkcontext.process_key(99999999) is None


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


@ROOT_ONLY
def test_other_users_cannot_reach_a_server(runtime: Path) -> None:
    host_server(runtime)
    [path] = sockets(runtime)
    probe = ("import os, socket, sys\nos.setgid(65534); os.setuid(65534)\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n"
             "    print(type(e).__name__); sys.exit(0)\nprint('connected')\n")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.strip() == "PermissionError", out


def test_stop_servers(runtime: Path) -> None:
    server = host_server(runtime)
    assert forkserver.stop_servers("fork-test", str(runtime / "kloset")) == 1
    wait_for(lambda: not alive(server))
    assert not sockets(runtime)
