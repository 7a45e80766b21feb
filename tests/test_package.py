"""The installable package, built the plakar way, installed by the real plakar, no Python.

The .ptar is what ``make package`` makes: the default ``make`` target (the
files manifest.yaml names: dist/plugin/plakar-azblob, the launcher, and
dist/plugin/runtime.tar, the PyInstaller runtime), then ``plakar pkg create
manifest.yaml vX.Y.Z``; built once per session, and only when its inputs
changed since the build cached in dist/. Every plakar here runs with
PATH=/nonexistent, so the connectors can only work if the package is
self-contained. ``test_pkg_build_from_a_recipe`` runs ``plakar pkg build`` on
a tagged temporary clone of this repository (committed files only), which
creates its own venv from PyPI: several minutes. Select with ``-m package``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azurite import ACCOUNT, KEY, Azurite
from entra_azurite import TokenService, https_azurite, self_signed
from fork_helpers import (
    alive,
    kill_processes_of,
    occurrences,
    parent_of,
    spare_of,
    status_of,
    stdout_ends,
    wait_for,
)
from kloset_grpc import importer_pb2_grpc as ipb_grpc
from plakar_env import PlakarEnv, output, plakar_bin, snapshot_id
from stdio_plugin import StdioPlugin
from tree_compare import make_sample_tree, snapshot

from kloset_sdk._proto import importer_pb2 as ipb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import plugin_package  # noqa: E402

pytestmark = [pytest.mark.package, pytest.mark.plakar, pytest.mark.azurite]

TIMEOUT = 180
NO_PATH = "/nonexistent"
MiB = 1024 * 1024
# Init sends nothing to this endpoint (port 9: discard).
COLD_CS = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
           "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;")


# -- fixtures --

def make(*targets: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
         timeout: float = 900) -> None:
    proc = subprocess.run(["make", "--no-print-directory", *targets], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"make {' '.join(targets)}:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="session")
def ptar() -> Path:
    """dist/azblob_vX.Y.Z_OS_ARCH.ptar, (re)built if its inputs changed: the default
    make target (build/venv's PyInstaller), then plakar pkg create manifest.yaml."""
    make("build")
    return plugin_package.package(plakar_bin(), reuse=True)


@pytest.fixture
def nopy() -> Iterator[PlakarEnv]:
    """A private plakar whose PATH holds no program at all (so no Python)."""
    env = PlakarEnv(extra_env={"PATH": NO_PATH})
    try:
        yield env
    finally:
        env.stop()


def pk(env: PlakarEnv, *args: str, ok: bool = True) -> CompletedProcess[str]:
    return env.run(*args, ok=ok, timeout=TIMEOUT)




def installed(env: PlakarEnv) -> list[str]:
    return re.findall(r"\bazblob@(v\S+)", pk(env, "pkg", "show").stdout)


def extracted(env: PlakarEnv) -> list[str]:
    """Names of the installed package folders plakar extracted."""
    return sorted(p.name for p in env.cache.glob("plakar/plugins/*/azblob_*"))


def new_container(service: BlobServiceClient, kind: str) -> ContainerClient:
    return service.create_container(f"{kind}-{uuid.uuid4().hex[:10]}")


SAMPLE = {
    "top.txt": b"at the top\n",
    "empty.bin": b"",
    "docs/readme.md": b"# nested\n",
    "docs/deep/er/data.bin": os.urandom(3 * MiB + 5),
    "photos/2024/été #1.txt": b"summer",
}


def fill(container: ContainerClient) -> None:
    for name, data in SAMPLE.items():
        container.upload_blob(name, data, metadata={"origin": "plakar-azblob-tests"},
                              content_settings=ContentSettings(content_type="text/plain"))


def blobs(container: ContainerClient) -> dict[str, bytes]:
    return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file()}


def backup_and_check(env: PlakarEnv, source: str, expected: dict[str, bytes],
                     tmp: Path) -> None:
    """backup @source into a local store, restore it locally, compare bytes."""
    store = str(tmp / f"store-{uuid.uuid4().hex[:6]}")
    pk(env, "at", store, "create")
    snap = snapshot_id(pk(env, "at", store, "backup", f"@{source}"))
    restored = tmp / f"restored-{snap}"
    pk(env, "at", store, "restore", "-to", str(restored), snap)
    assert files(restored) == expected


def restore_into_a_container(env: PlakarEnv, service: BlobServiceClient, cs: str,
                             store: Path) -> None:
    """Back up @src (SAMPLE) into a local store at ``store``, restore it into a new
    container through a destination, compare the blobs."""
    pk(env, "at", str(store), "create")
    snap = snapshot_id(pk(env, "at", str(store), "backup", "@src"))
    dst = new_container(service, "dst")
    pk(env, "destination", "add", "dst", f"azblob://{dst.container_name}", cs)
    pk(env, "at", str(store), "restore", "-to", "@dst", snap)
    assert blobs(dst) == SAMPLE


def next_version(version: str) -> str:
    major, minor, patch = version[1:].split("-")[0].split(".")
    return f"v{major}.{minor}.{int(patch) + 1}"


# -- the package --

def test_manifest_names_the_built_files(ptar: Path) -> None:
    ver = plugin_package.version()
    assert ptar.name.startswith(f"azblob_{ver}_") and ptar.parent == plugin_package.DIST
    # The top-level manifest is the package's: static paths, all built by `make`.
    assert plugin_package.manifest_files() == sorted([
        "dist/plugin/plakar-azblob", "dist/plugin/runtime.tar",
        *(f"src/plakar_azblob/schemas/{role}.json" for role in plugin_package.ROLES)])
    manifest = plugin_package.MANIFEST.read_text()
    assert manifest.count("extra_files:") == 1
    assert all(f"args: [{kind}]" in manifest for kind in plugin_package.ROLES)
    assert plugin_package.check_manifest_files()
    launcher = plugin_package.LAUNCHER
    assert os.access(launcher, os.X_OK) and launcher.read_text().startswith("#!/bin/sh\n")


def test_runtime_archive_is_reproducible_and_lean(ptar: Path) -> None:
    archive = plugin_package.ARCHIVE
    digest = plugin_package.write_archive(
        plugin_package.WORK / "dist" / "plakar-azblob", Path(str(archive) + ".again"),
        plugin_package.source_date_epoch())
    again = Path(str(archive) + ".again")
    try:
        assert again.read_bytes() == archive.read_bytes()
    finally:
        again.unlink()
    # The launcher extracts into a folder named after the archive's content.
    name = plugin_package.runtime_name(digest)
    assert f"runtime={name}\n" in plugin_package.LAUNCHER.read_text()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and "plakar-azblob" in names
    assert any(n.startswith("_internal/") for n in names)
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert {m.mtime for m in members} == {plugin_package.source_date_epoch()}
    assert {m.mode for m in members} <= {0o755, 0o644}
    exe = next(m for m in members if m.name == "plakar-azblob")
    assert exe.isreg() and exe.mode == 0o755
    # Lean: none of the development tools came along, no install records.
    joined = "\n".join(names)
    for unwanted in ("grpc_tools", "setuptools", "pip/", "_pytest", "mypy", "PyInstaller/",
                     "direct_url.json"):
        assert unwanted not in joined


# -- the launcher: first run extracts once, concurrent first runs are safe --

def _copy_launcher(dest: Path) -> Path:
    """The launcher and (a link to) the archive in a fresh folder, as installed."""
    dest.mkdir(parents=True)
    shutil.copy2(plugin_package.LAUNCHER, dest / "plakar-azblob")
    os.symlink(plugin_package.ARCHIVE, dest / "runtime.tar")
    return dest / "plakar-azblob"


def _runtime(launcher: Path) -> str:
    return re.findall(r"^runtime=(\S+)$", launcher.read_text(), re.MULTILINE)[0]


def test_launcher_concurrent_first_runs(ptar: Path, tmp_path: Path) -> None:
    launcher = _copy_launcher(tmp_path / "pkg")
    env = {"PATH": NO_PATH, "HOME": str(tmp_path / "home")}
    # No arguments: the real executable prints its usage on stderr, exits 2.
    procs = [subprocess.Popen([str(launcher)], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(6)]
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        assert (proc.returncode, out) == (2, b""), err
        assert b"usage" in err.lower(), err
    runtime = _runtime(launcher)
    published = tmp_path / "pkg" / runtime
    assert published.is_symlink() and (published / "plakar-azblob").is_file()
    # The runs that lost the race removed their copies.
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == sorted(
        ["plakar-azblob", "runtime.tar", runtime, os.readlink(published)])
    assert not (tmp_path / "home").exists()
    # Later runs: exec at once, nothing extracted again.
    started = time.monotonic()
    proc = subprocess.run([str(launcher)], env=env, capture_output=True, timeout=TIMEOUT)
    assert (proc.returncode, proc.stdout) == (2, b"")
    assert time.monotonic() - started < 5
    assert len(list((tmp_path / "pkg").iterdir())) == 4


def test_launcher_falls_back_to_the_user_cache(ptar: Path, tmp_path: Path) -> None:
    """A package folder where the runtime cannot be published: XDG_CACHE_HOME."""
    launcher = _copy_launcher(tmp_path / "pkg")
    runtime = _runtime(launcher)
    os.symlink("/nonexistent", tmp_path / "pkg" / runtime)  # taken, unusable
    cache = tmp_path / "xdg-cache"
    env = {"PATH": NO_PATH, "XDG_CACHE_HOME": str(cache)}
    proc = subprocess.run([str(launcher)], env=env, capture_output=True, timeout=TIMEOUT)
    assert (proc.returncode, proc.stdout) == (2, b""), proc.stderr
    assert (cache / "plakar-azblob" / runtime / "plakar-azblob").is_file()
    assert len(list((tmp_path / "pkg").iterdir())) == 3  # nothing left beside it


def test_launcher_without_its_archive(ptar: Path, tmp_path: Path) -> None:
    launcher = _copy_launcher(tmp_path / "pkg")
    (tmp_path / "pkg" / "runtime.tar").unlink()
    proc = subprocess.run([str(launcher), "importer"], env={"PATH": NO_PATH},
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert "runtime.tar is missing" in proc.stderr


def test_launcher_serves_grpc_on_its_stdio(ptar: Path, tmp_path: Path) -> None:
    """Through the launcher (first run, then a later one), Init is answered."""
    launcher = _copy_launcher(tmp_path / "pkg")
    for _ in range(2):
        plugin = StdioPlugin([str(launcher), "importer"],
                             env={"PATH": NO_PATH, "HOME": str(tmp_path)})
        try:
            ipb_grpc.ImporterStub(plugin.channel).Init(  # type: ignore[no-untyped-call]
                ipb.InitRequest(proto="azblob", config={
                    "location": "azblob://launcher", "connection_string": COLD_CS}),
                timeout=60, wait_for_ready=True)
        finally:
            plugin.close_stdin()
        assert plugin.proc.returncode == 0, plugin.stderr


def test_the_frozen_build_checks_listing_pages_as_the_helper(
        ptar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime started with the helper's argument (as a frozen importer starts
    it: transfer/xmlcheck) gives each page the verdict the importer would."""
    from test_xmlcheck import CASES, EXPECTED

    from plakar_azblob.transfer import wellformed, xmlcheck

    launcher = _copy_launcher(tmp_path / "pkg")
    monkeypatch.setattr(xmlcheck, "MIN_HELPED", 0)
    monkeypatch.setenv("HOME", str(tmp_path))
    with xmlcheck.PageChecker([str(launcher), wellformed.HELPER_ARG]) as checker:
        assert {name: checker.check(body) for name, (body, _) in CASES.items()} == EXPECTED
        assert (checker.helped, checker.here) == (len(CASES), 0)


# -- the packaged connector's fork server (the confinement was found lacking with it) --

class Packaged:
    """The packaged importer spawned as plakar spawns it (two pipes), in a
    folder of its own (so that the process serving it can be found), Init
    answered; ``pid`` is the process that serves it: the launcher itself, or
    the child a fork server forked."""

    def __init__(self, launcher: Path, runtime: Path, cwd: Path,
                 wrapper: list[str] | None = None, **env: str) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        command = shlex.join([*(wrapper or []), str(launcher), "importer"])
        self.plugin = StdioPlugin(
            ["/bin/sh", "-c", f"cd {shlex.quote(str(cwd))} && exec {command}"],
            {"PATH": NO_PATH, "HOME": str(runtime), "XDG_RUNTIME_DIR": str(runtime), **env})
        try:
            ipb_grpc.ImporterStub(self.plugin.channel).Init(  # type: ignore[no-untyped-call]
                ipb.InitRequest(proto="azblob", config={
                    "location": "azblob://forked", "connection_string": COLD_CS}),
                timeout=60, wait_for_ready=True)
        except Exception:
            self.plugin.kill()
            raise
        self.pid = self.plugin.proc.pid
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if (entry.name.isdigit() and (entry / "comm").read_text().startswith("kloset-")
                        and os.readlink(entry / "cwd") == str(cwd)):
                    self.pid = int(entry.name)

    @property
    def forked(self) -> bool:
        return self.pid != self.plugin.proc.pid


@pytest.fixture
def packaged(ptar: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """An installed launcher (runtime extracted) and a private runtime directory
    whose fork servers are killed at the end."""
    launcher = _copy_launcher(tmp_path / "pkg")
    runtime = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    runtime.chmod(0o700)
    try:
        yield launcher, runtime
    finally:
        kill_processes_of(launcher.parent)
        shutil.rmtree(runtime, ignore_errors=True)


def packaged_server(launcher: Path, runtime: Path, tmp_path: Path, **env: str) -> int:
    """Plain launches until one is forked: the pid of the server that forked it."""
    deadline = time.monotonic() + 30
    while True:
        launch = Packaged(launcher, runtime, tmp_path / uuid.uuid4().hex, **env)
        launch.plugin.close_stdin()
        if launch.forked or time.monotonic() > deadline:
            assert launch.forked, "no fork server served the packaged connector"
            [lock] = (runtime / "kloset").glob("plakar-azblob-*.sock.lock")
            return int(lock.read_text().split()[0])


def _limits(pid: int) -> str:
    return next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if line.startswith("Max open files")).split()[3]


PACKAGED_CONFINED = {
    "setpriv --no-new-privs": (["setpriv", "--no-new-privs"],
                               lambda pid: status_of(pid)["NoNewPrivs"], "1"),
    "setpriv --bounding-set -all": (["setpriv", "--bounding-set", "-all"],
                                    lambda pid: status_of(pid)["CapBnd"], "0000000000000000"),
    "setpriv --groups 4242": (["setpriv", "--groups", "4242"],
                              lambda pid: status_of(pid)["Groups"], "4242"),
    "prlimit --nofile=300:300": (["prlimit", "--nofile=300:300"], _limits, "300"),
    "nice -n 7": (["nice", "-n", "7"],
                  lambda pid: Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16],
                  "7"),
}


@pytest.mark.skipif(os.getuid() != 0, reason="needs root")
def test_packaged_connector_confined_like_its_launcher(packaged: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    """The issue's table, with the packaged connector and a fork server
    running: each launcher changed in one way; the process that serves plakar
    has that change, and is never the running server's child."""
    launcher, runtime = packaged
    host = packaged_server(launcher, runtime, tmp_path)
    for name, (wrapper, fact, value) in PACKAGED_CONFINED.items():
        if shutil.which(wrapper[0]) is None:
            continue
        wrapper = [str(shutil.which(wrapper[0])), *wrapper[1:]]
        for _ in range(2):  # in process, then forked by a server of that context
            launch = Packaged(launcher, runtime, tmp_path / uuid.uuid4().hex, wrapper)
            assert fact(launch.pid) == value and fact(host) != value, name
            assert parent_of(launch.pid) != host, name
            launch.plugin.close_stdin()
    if shutil.which("unshare"):
        launch = Packaged(launcher, runtime, tmp_path / "net",
                          [str(shutil.which("unshare")), "-n"])
        assert os.readlink(f"/proc/{launch.pid}/ns/net") != os.readlink(
            f"/proc/{host}/ns/net")
        launch.plugin.close_stdin()


@pytest.mark.faults
def test_packaged_connector_with_its_server_stopped(packaged: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    """A stopped server (and its spare): the launch is served in its own process,
    the stopped ones hold none of its pipes (stdout reaches EOF once stdin is
    closed), and a new server takes over."""
    launcher, runtime = packaged
    server = packaged_server(launcher, runtime, tmp_path)
    spare = spare_of(server)
    for pid in (server, spare):
        os.kill(pid, signal.SIGSTOP)
    try:
        launch = Packaged(launcher, runtime, tmp_path / "stopped")
        assert not launch.forked
        launch.plugin.close_stdin()
        env = {"PATH": NO_PATH, "HOME": str(runtime), "XDG_RUNTIME_DIR": str(runtime)}
        status, took = stdout_ends([str(launcher), "importer"], env)
        assert status == 0 and took >= 0, "a stopped process kept the launcher's stdout"
        assert packaged_server(launcher, runtime, tmp_path) != server
    finally:
        for pid in (server, spare):
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: not alive(server), timeout=15)


@pytest.mark.skipif(os.getuid() != 0, reason="reading another process's memory needs root")
def test_packaged_server_keeps_no_secret(packaged: tuple[Path, Path], tmp_path: Path) -> None:
    launcher, runtime = packaged
    server = packaged_server(launcher, runtime, tmp_path)
    marker = f"client-secret-{uuid.uuid4().hex}"
    launch = Packaged(launcher, runtime, tmp_path / "secret", AZURE_CLIENT_SECRET=marker)
    assert launch.forked and occurrences(launch.pid, marker.encode()) > 0
    launch.plugin.close_stdin()
    wait_for(lambda: not alive(launch.pid))
    for pid in (server, spare_of(server)):
        assert occurrences(pid, marker.encode()) == 0


def test_packaged_connector_killed_kills_its_launcher(packaged: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    launcher, runtime = packaged
    packaged_server(launcher, runtime, tmp_path)
    launch = Packaged(launcher, runtime, tmp_path / "killed")
    assert launch.forked
    os.kill(launch.pid, signal.SIGKILL)
    assert launch.plugin.proc.wait(10) == -signal.SIGKILL
    launch.plugin.kill()


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare")
def test_store_creation_under_unshare_n_cannot_reach_the_hosts_azurite(
    nopy: PlakarEnv, ptar: Path, azurite: Azurite
) -> None:
    """As the issue found it: with a fork server running (started by a store on
    Azurite on the host's loopback), creating a store from inside a network
    namespace of its own must fail, and write nothing."""
    pk(nopy, "pkg", "add", str(ptar))
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    cs = f"connection_string={azurite.connection_string}"
    host = new_container(service, "host").container_name
    pk(nopy, "store", "add", "host", f"azblob://{host}", cs)
    pk(nopy, "at", "@host", "create")
    runtime = Path(nopy.env["XDG_RUNTIME_DIR"])
    wait_for(lambda: list(runtime.glob("kloset/plakar-azblob-*.sock")))
    confined = new_container(service, "confined")
    pk(nopy, "store", "add", "confined", f"azblob://{confined.container_name}", cs)
    proc = subprocess.run([str(shutil.which("unshare")), "-n", nopy.bin, "at", "@confined",
                           "create"], env=nopy.env, cwd=nopy.root, capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and "network is unreachable" in output(proc), output(proc)
    assert not list(confined.list_blobs())


def test_no_python_on_the_path(nopy: PlakarEnv) -> None:
    for probe in (["/bin/sh", "-c", "command -v python3 || command -v python"],
                  ["/usr/bin/which", "python3"]):
        proc = subprocess.run(probe, env=nopy.env, capture_output=True, text=True)
        assert proc.returncode != 0 and not proc.stdout.strip(), proc.stdout


def test_source_store_and_destination_without_python(
    nopy: PlakarEnv, ptar: Path, azurite: Azurite, tmp_path: Path
) -> None:
    pk(nopy, "pkg", "add", str(ptar))
    assert installed(nopy) == [plugin_package.version()]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    cs = f"connection_string={azurite.connection_string}"

    # source: a container with nested prefixes and metadata
    src = new_container(service, "src")
    fill(src)
    pk(nopy, "source", "add", "src", f"azblob://{src.container_name}", cs)
    backup_and_check(nopy, "src", SAMPLE, tmp_path)

    # storage: a Kloset store in a container
    sample = tmp_path / "sample"
    sample.mkdir()
    make_sample_tree(sample)
    kstore = new_container(service, "kstore").container_name
    pk(nopy, "store", "add", "az", f"azblob://{kstore}/kloset", cs)
    pk(nopy, "at", "@az", "create")
    snap = snapshot_id(pk(nopy, "at", "@az", "backup", str(sample)))
    assert "check completed without errors" in output(pk(nopy, "at", "@az", "check"))
    pk(nopy, "at", "@az", "restore", "-to", str(tmp_path / "from-az"), snap)
    assert snapshot(tmp_path / "from-az") == snapshot(sample)
    names = [b.name for b in service.get_container_client(kstore).list_blobs()]
    assert "kloset/CONFIG" in names and any(n.startswith("kloset/packfiles/") for n in names)

    # destination: the source backup restored into another container
    restore_into_a_container(nopy, service, cs, tmp_path / "local")


def test_remove_then_add_again(nopy: PlakarEnv, ptar: Path, azurite: Azurite,
                               tmp_path: Path) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    src = new_container(service, "again")
    fill(src)
    pk(nopy, "pkg", "add", str(ptar))
    pk(nopy, "source", "add", "src", f"azblob://{src.container_name}",
       f"connection_string={azurite.connection_string}")
    backup_and_check(nopy, "src", SAMPLE, tmp_path)

    pk(nopy, "pkg", "rm", "azblob")
    assert installed(nopy) == [] and extracted(nopy) == []
    store = str(tmp_path / "nothing")
    pk(nopy, "at", store, "create")
    assert pk(nopy, "at", store, "backup", "@src", ok=False).returncode != 0

    pk(nopy, "pkg", "add", str(ptar))
    assert installed(nopy) == [plugin_package.version()]
    backup_and_check(nopy, "src", SAMPLE, tmp_path)


def test_upgrade_with_pkg_add_u(nopy: PlakarEnv, ptar: Path, azurite: Azurite,
                                tmp_path: Path) -> None:
    old = plugin_package.version()
    new = next_version(old)
    newer = plugin_package.package(plakar_bin(), new, tmp_path)
    assert newer.name == ptar.name.replace(f"_{old}_", f"_{new}_")

    pk(nopy, "pkg", "add", str(ptar))
    refused = pk(nopy, "pkg", "add", str(newer), ok=False)
    assert refused.returncode != 0 and "already installed" in output(refused)
    pk(nopy, "pkg", "add", "-u", str(newer))
    assert installed(nopy) == [new]
    assert extracted(nopy) == [newer.name.removesuffix(".ptar")]
    # -u never downgrades: the older package is skipped
    pk(nopy, "pkg", "add", "-u", str(ptar))
    assert installed(nopy) == [new]

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    src = new_container(service, "upgraded")
    fill(src)
    pk(nopy, "source", "add", "src", f"azblob://{src.container_name}",
       f"connection_string={azurite.connection_string}")
    backup_and_check(nopy, "src", SAMPLE, tmp_path)


# -- the source build: plakar pkg build with a recipe, as the official doc has it --

# What a user's shell would give make and pip (proxies, certificates, pip settings).
_PASSED_ENV = ("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
               "no_proxy", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "SOURCE_DATE_EPOCH")


def _build_env() -> dict[str, str]:
    """PATH with this Python's own folder first (python3 without shims), pip's cache."""
    env = {k: v for k, v in os.environ.items() if k.startswith(_PASSED_ENV)}
    env["PATH"] = f"{Path(sys.base_prefix) / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    return env


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


def installed_tree(env: PlakarEnv) -> dict[str, tuple[int, str]]:
    """The installed package folder: path -> (mode, SHA-256 of the content)."""
    [folder] = env.cache.glob("plakar/plugins/*/azblob_*")
    tree = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        tree[path.relative_to(folder).as_posix()] = (stat.S_IMODE(st.st_mode), digest)
    return tree


def test_pkg_build_from_a_recipe(nopy: PlakarEnv, ptar: Path, azurite: Azurite,
                                 tmp_path: Path) -> None:
    """A tagged clone, a recipe naming it, ``plakar pkg build`` in an empty folder;
    the .ptar installs and works, and holds the same files as ``make package``'s."""
    ver = plugin_package.version()
    repo = tmp_path / "repo"
    _git("clone", "--quiet", f"file://{ROOT}", str(repo), cwd=tmp_path)
    _git("tag", ver, cwd=repo)
    recipe = tmp_path / "recipe" / "recipe.yaml"
    recipe.parent.mkdir()
    recipe.write_text(f"name: azblob\nversion: {ver}\nrepository: file://{repo}\n")
    out = tmp_path / "out"
    out.mkdir()

    builder = PlakarEnv(extra_env=_build_env())
    try:
        started = time.monotonic()
        builder.run("pkg", "build", str(recipe), cwd=out, timeout=1500)
        took = time.monotonic() - started
    finally:
        builder.stop()
    platform = ptar.name.removeprefix(f"azblob_{ver}_")
    built = out / f"azblob_{ver}_{platform}"
    assert sorted(out.iterdir()) == [built], f"pkg build took {took:.0f} s"

    # `make package` in the same tagged sources (its own build/venv, from scratch).
    make("package", f"PLAKAR={plakar_bin()}", cwd=repo,
         env={**os.environ, **_build_env()}, timeout=1500)
    packaged = repo / "dist" / built.name
    assert packaged.is_file()

    # Same files: paths, modes and bytes (the build is reproducible).
    other = PlakarEnv(extra_env={"PATH": NO_PATH})
    try:
        pk(other, "pkg", "add", str(packaged))
        expected = installed_tree(other)
    finally:
        other.stop()
    pk(nopy, "pkg", "add", str(built))
    assert installed(nopy) == [ver]
    tree = installed_tree(nopy)
    assert tree == expected
    assert {"manifest.yaml", "dist/plugin/plakar-azblob", "dist/plugin/runtime.tar",
            "src/plakar_azblob/schemas/storage.json"} <= set(tree)
    assert tree["dist/plugin/plakar-azblob"][0] & 0o111

    # It works, with no Python on the PATH: a backup from Azurite, a restore into it.
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    cs = f"connection_string={azurite.connection_string}"
    src = new_container(service, "built")
    fill(src)
    pk(nopy, "source", "add", "src", f"azblob://{src.container_name}", cs)
    restore_into_a_container(nopy, service, cs, tmp_path / "store")


# -- Microsoft Entra ID in the packaged build: azure.identity must be bundled --

def test_entra_id_managed_identity_in_the_packaged_build(
    ptar: Path, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    azurite = https_azurite(cert, key)
    tokens = TokenService()
    endpoint = azurite.endpoint
    env = PlakarEnv(extra_env={"PATH": NO_PATH, **tokens.env, "REQUESTS_CA_BUNDLE": str(cert)})
    try:
        service = BlobServiceClient(endpoint, credential={"account_name": ACCOUNT,
                                                          "account_key": KEY},
                                    connection_verify=str(cert))
        src = new_container(service, "entra")
        fill(src)
        pk(env, "pkg", "add", str(ptar))
        # No key, SAS nor connection string: Microsoft Entra ID, through
        # DefaultAzureCredential's managed identity.
        pk(env, "source", "add", "src", f"azblob://{src.container_name}",
           f"account_name={ACCOUNT}", f"endpoint={endpoint}")
        backup_and_check(env, "src", SAMPLE, tmp_path)
        assert tokens.served > 0
    finally:
        tokens.shutdown()
        tokens.server_close()
        env.stop()
        azurite.stop()


# -- cold path: azure.identity is loaded only when Entra ID is used --

def test_importer_cold_path_does_not_import_azure_identity() -> None:
    """``python -X importtime``: spawn the importer, Init it, exit; list what it imported."""
    plugin = StdioPlugin([sys.executable, "-X", "importtime", "-m", "plakar_azblob",
                          "importer"])
    try:
        ipb_grpc.ImporterStub(plugin.channel).Init(  # type: ignore[no-untyped-call]
            ipb.InitRequest(proto="azblob", config={"location": "azblob://cold",
                                                    "connection_string": COLD_CS}),
            timeout=60, wait_for_ready=True)
    finally:
        plugin.close_stdin()
    imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", plugin.stderr,
                          re.MULTILINE)
    assert "plakar_azblob.source" in imported and "azure.storage.blob" in imported
    assert not [m for m in imported if m.startswith(("azure.identity", "msal"))]
