"""Faults through the real plakar (v1.1.4): errors, throttling, cuts, outages, kills, races.

The service is Azurite behind :class:`fault_proxy.FaultProxy` (loopback only),
which answers a seeded 10 % of the requests with 500, 503 or 429 +
Retry-After, or cuts a download in the middle of its body. Outages are real
(Azurite stopped, then started again on the same port and data folder), kills
are real (SIGKILL of plakar). Every command and every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from azblob_helpers import (
    BIG,
    TIMEOUT,
    blob_bytes,
    blob_listing,
    expected_tree,
    fill_tricky,
    new_container,
    pk,
    restored_tree,
    service,
)
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azurite import ACCOUNT, KEY, Azurite, restart_azurite, start_azurite
from fault_proxy import FaultProxy
from plakar_env import PlakarEnv, output, snapshot_id
from tree_compare import make_sample_tree, snapshot

from plakar_azblob.clients.config import parse_config
from plakar_azblob.clients.factory import container_client
from plakar_azblob.clients.retry import (
    INITIAL_BACKOFF,
    MAX_BACKOFF,
    MAX_RETRY_AFTER,
    AzblobRetry,
    retry_after,
)
from plakar_azblob.mapping.attributes import default_content_type as content_type

pytestmark = [pytest.mark.faults, pytest.mark.plakar, pytest.mark.azurite]

MiB = 1024 * 1024
FAULT_RATE = 0.10
EXIT_BOUND = 2.0  # seconds: every plugin process is gone this soon after plakar is killed


# -- helpers --

@contextmanager
def proxy(azurite: Azurite, **kwargs: Any) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.port, **kwargs) as px:
        yield px


def key_options(endpoint: str) -> list[str]:
    return [f"account_name={ACCOUNT}", f"account_key={KEY}", f"endpoint={endpoint}"]


def add_small_blobs(container: ContainerClient, count: int) -> None:
    for i in range(count):
        container.upload_blob(f"many/{i:03d}.txt", f"small blob {i}\n".encode() * (i + 1))


def small_tree(tmp_path: Path, files: int) -> Path:
    """``tmp_path/src``: make_sample_tree plus ``files`` small files (more requests,
    little data)."""
    root = tmp_path / "src"
    root.mkdir()
    make_sample_tree(root)
    extra = root / "extra"
    extra.mkdir()
    for i in range(files):
        (extra / f"f{i:03d}.txt").write_bytes(os.urandom(1000 + 37 * i))
    return root


def xattrs(env: PlakarEnv, store: str, snap: str) -> list[str]:
    return sorted(pk(env, "at", store, "diag", "xattr", snap).stdout.splitlines())


def ls_tree(env: PlakarEnv, store: str, snap: str) -> list[str]:
    return sorted(pk(env, "at", store, "ls", "-recursive", snap).stdout.splitlines())


def assert_faults_injected(px: FaultProxy) -> None:
    assert px.injected > 0, f"no fault injected in {px.requests} requests"
    assert set(px.faults) <= {500, 503, 429}


# -- the retry policy itself --

def test_retry_policy_backoff_and_retry_after() -> None:
    policy = AzblobRetry()
    for count in range(1, 12):
        wait = policy.get_backoff_time({"count": count})
        assert 0.8 * INITIAL_BACKOFF <= wait <= 1.2 * MAX_BACKOFF
    assert policy.get_backoff_time({"count": 1, "retry_after": 3.0}) >= 3.0
    assert policy.get_backoff_time({"count": 1, "retry_after": 3600.0}) == MAX_RETRY_AFTER
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"x-ms-retry-after-ms": "1500"}) == 1.5
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # past
    assert retry_after({}) is None


def test_sdk_clients_ride_out_throttling_and_server_errors(azurite: Azurite) -> None:
    """The connectors' clients, through the proxy: 40 % of the requests answered 429/503."""
    with proxy(azurite, seed=4, fault_rate=0.4, statuses=(429, 503)) as px:
        cfg = parse_config({"location": f"azblob://thr-{uuid.uuid4().hex[:10]}",
                            "account_name": ACCOUNT, "account_key": KEY,
                            "endpoint": px.endpoint(ACCOUNT)}, "storage")
        client = container_client(cfg)
        client.create_container()
        data = {f"b{i}": os.urandom(1000 + i) for i in range(5)}
        for name, value in data.items():
            client.upload_blob(name, value)
        got = {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}
        assert got == data
        assert px.faults[429] > 0 and px.faults[503] > 0
        client.close()


# -- 1. 500, 503 and 429 + Retry-After on 10 % of the requests --

def test_source_backup_under_faults_equals_a_clean_run(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path
) -> None:
    container = new_container(azurite, "fsrc")
    big = fill_tricky(container)
    add_small_blobs(container, 60)
    name = container.container_name
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    pk(azplakar, "source", "add", "clean", f"azblob://{name}",
       f"connection_string={azurite.connection_string}")
    clean = snapshot_id(pk(azplakar, "at", store, "backup", "@clean"))

    with proxy(azurite, seed=1, fault_rate=FAULT_RATE) as px:
        pk(azplakar, "source", "add", "faulty", f"azblob://{name}",
           *key_options(px.endpoint(ACCOUNT)))
        faulty = snapshot_id(pk(azplakar, "at", store, "backup", "@faulty"))
        assert_faults_injected(px)

    # Same tree (names, dates, modes, sizes), same properties, same bytes.
    assert ls_tree(azplakar, store, faulty) == ls_tree(azplakar, store, clean)
    assert xattrs(azplakar, store, faulty) == xattrs(azplakar, store, clean)
    pk(azplakar, "at", store, "restore", "-to", str(tmp_path / "restored"), faulty)
    restored = restored_tree(tmp_path / "restored")
    assert restored == expected_tree(container)
    assert restored[BIG][3] == big


def test_store_backup_and_restore_under_faults(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path
) -> None:
    src = small_tree(tmp_path, 40)
    kstore = new_container(azurite, "fstore")
    with proxy(azurite, seed=2, fault_rate=FAULT_RATE) as px:
        pk(azplakar, "store", "add", "azst", f"azblob://{kstore.container_name}/k",
           *key_options(px.endpoint(ACCOUNT)))
        pk(azplakar, "at", "@azst", "create")
        snap = snapshot_id(pk(azplakar, "at", "@azst", "backup", str(src)))
        assert "check completed without errors" in output(pk(azplakar, "at", "@azst", "check"))
        pk(azplakar, "at", "@azst", "restore", "-to", str(tmp_path / "restored"), snap)
        assert_faults_injected(px)
    assert snapshot(tmp_path / "restored") == snapshot(src)
    # The store is whole for a client that sees no fault either.
    pk(azplakar, "store", "add", "direct", f"azblob://{kstore.container_name}/k",
       *key_options(azurite.endpoint))
    assert "check completed without errors" in output(pk(azplakar, "at", "@direct", "check"))
    assert not [n for n in blob_listing(kstore) if n.startswith("k/locks/")], "a lock was left"


def test_restore_to_a_container_under_faults_equals_a_clean_run(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path
) -> None:
    src = small_tree(tmp_path, 60)
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    snap = snapshot_id(pk(azplakar, "at", store, "backup", str(src)))

    clean = new_container(azurite, "fclean")
    pk(azplakar, "destination", "add", "clean", f"azblob://{clean.container_name}/out",
       f"connection_string={azurite.connection_string}")
    pk(azplakar, "at", store, "restore", "-to", "@clean", snap)
    faulty = new_container(azurite, "ffaulty")
    with proxy(azurite, seed=3, fault_rate=FAULT_RATE) as px:
        pk(azplakar, "destination", "add", "faulty", f"azblob://{faulty.container_name}/out",
           *key_options(px.endpoint(ACCOUNT)))
        pk(azplakar, "at", store, "restore", "-to", "@faulty", snap)
        assert_faults_injected(px)

    files = {f"out/{p.relative_to(src)}": p.read_bytes() for p in src.rglob("*")
             if p.is_file() and not p.is_symlink()}
    assert blob_bytes(faulty) == files == blob_bytes(clean)
    props = {b.name: (b.size, b.content_settings.content_type) for b in faulty.list_blobs()}
    assert props == {b.name: (b.size, b.content_settings.content_type)
                     for b in clean.list_blobs()}
    assert all(ctype == content_type(n) for n, (_, ctype) in props.items())


# -- 2. Azurite stopped in the middle of a backup into an azblob store --

class ListingWatch:
    """Polls a container's listing in a thread: every committed blob seen, with its sizes."""

    def __init__(self, client: ContainerClient) -> None:
        self.client = client
        self.seen: dict[str, set[int]] = {}
        self.uncommitted: set[str] = set()  # blobs seen with staged, uncommitted blocks only
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="listing-watch")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                committed = {b.name: int(b.size) for b in self.client.list_blobs()}
                every = self.client.list_blobs(include=["uncommittedblobs"])
                staged = {b.name for b in every} - set(committed)
            except AzureError:
                self._stop.wait(0.05)  # the service is down: try again
                continue
            for blob, size in committed.items():
                self.seen.setdefault(blob, set()).add(size)
            self.uncommitted |= staged
            self.polls += 1
            self._stop.wait(0.02)

    def packfiles(self) -> int:
        return sum(1 for n in self.seen if "/packfiles/" in n)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def popen_plakar(env: PlakarEnv, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([env.bin, *args], env=env.env, cwd=env.root, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def test_azurite_stopped_during_a_store_backup(
    azplakar: PlakarEnv, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(16):  # random data: nothing deduplicates or compresses
        (src / f"r{i:02d}.bin").write_bytes(os.urandom(2 * MiB + i))
    server = start_azurite(location=tmp_path / "azurite-data")
    try:
        client = BlobServiceClient.from_connection_string(server.connection_string)
        kstore = client.create_container(f"outage-{uuid.uuid4().hex[:10]}")
        pk(azplakar, "store", "add", "azst", f"azblob://{kstore.container_name}/k",
           *key_options(server.endpoint))
        pk(azplakar, "at", "@azst", "create")
        watch = ListingWatch(kstore)
        backup = popen_plakar(azplakar, "at", "@azst", "backup", str(src))
        try:
            # Stop the service once the first packfile is committed, others on their way.
            wait_for(lambda: watch.packfiles() >= 1 or backup.poll() is not None, 90,
                     "a first packfile")
            assert backup.poll() is None, "the backup ended before the outage"
            server.stop(grace=10)
            text, _ = backup.communicate(timeout=TIMEOUT)
        finally:
            if backup.poll() is None:
                backup.kill()
                backup.wait(10)
        assert backup.returncode != 0, text
        assert "Traceback" not in text, text
        problem = [ln for ln in text.splitlines()
                   if re.search(r"cannot reach http://127\.0\.0\.1:\d+/devstoreaccount1: "
                                r"connection refused|the connection to .* failed", ln)]
        assert problem, text

        server = restart_azurite(server)
        snap = snapshot_id(pk(azplakar, "at", "@azst", "backup", str(src)))
        assert "check completed without errors" in output(pk(azplakar, "at", "@azst", "check"))
        pk(azplakar, "at", "@azst", "restore", "-to", str(tmp_path / "restored"), snap)
        assert snapshot(tmp_path / "restored") == snapshot(src)
        watch.stop()
        final = blob_listing(kstore)
    finally:
        server.stop(grace=10)

    # A blob appears only whole: every packfile was seen with one size only, the
    # size it has now (a half-written one would have shown a smaller size first),
    # and never empty.
    assert watch.polls > 0
    packfiles = {n: sizes for n, sizes in watch.seen.items() if "/packfiles/" in n}
    assert packfiles
    for blob, sizes in packfiles.items():
        assert len(sizes) == 1 and 0 not in sizes, (blob, sizes)
        if blob in final:
            assert sizes == {final[blob][0]}, (blob, sizes, final[blob])


# -- 3. a connection cut in the middle of a blob download --

@pytest.mark.parametrize("cut_times", [1, None], ids=["once", "always"])
def test_download_cut_in_the_middle(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path, cut_times: int | None
) -> None:
    container = new_container(azurite, "fcut")
    big = os.urandom(9 * MiB + 7)  # three ranges of 4 MiB
    container.upload_blob(BIG, big)
    container.upload_blob("small.txt", b"small and whole")
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    with proxy(azurite, cut_blob=BIG, cut_after=MiB + 5, cut_times=cut_times) as px:
        pk(azplakar, "source", "add", "src", f"azblob://{container.container_name}",
           *key_options(px.endpoint(ACCOUNT)))
        proc = pk(azplakar, "at", store, "backup", "@src", ok=False)
        assert px.cuts >= 1
    text = output(proc)
    assert "Traceback" not in text, text
    snap = snapshot_id(proc)
    assert pk(azplakar, "at", store, "cat", f"{snap}:/small.txt").stdout == "small and whole"
    listed = pk(azplakar, "at", store, "ls", "-recursive", snap).stdout
    cat = subprocess.run([azplakar.bin, "at", store, "cat", f"{snap}:/{BIG}"], env=azplakar.env,
                         capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    if cut_times == 1:
        # Retried: the whole blob, byte for byte.
        assert cat.returncode == 0 and cat.stdout == big
    else:
        # Reported, and not stored at all (never a truncated file).
        assert re.search(rf"KO .* /{BIG}: .*cannot read blob '{BIG}': the connection broke "
                         "in the middle of the download", text), text
        assert f"/{BIG}" not in listed, listed
        assert cat.returncode != 0 and b"no such file" in cat.stderr, cat
        assert big[:MiB] not in cat.stdout
        assert px.cuts >= 3  # tried again before giving up


# -- 4. plakar killed in the middle of a backup and of a restore --

def our_plugins(env: PlakarEnv) -> dict[int, tuple[int, str]]:
    """azblob plugin processes started by ``env``'s plakar: pid -> (parent pid, start time)."""
    found = {}
    for pid in env.plugin_processes():
        entry = Path(f"/proc/{pid}")
        try:
            if b"plakar-azblob" not in (entry / "cmdline").read_bytes():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[1]), fields[19])
    return found


def leftovers(env: PlakarEnv) -> list[str]:
    """Our transport's private socket folders left in the env's TMPDIR."""
    return sorted(p.name for p in env.root.glob("kloset-*"))


def kill_mid_way(env: PlakarEnv, px: FaultProxy, kinds: int, *args: str) -> None:
    """Run plakar, SIGKILL it once ``kinds`` of its plugins run and requests flow; then
    every plugin it started must be gone within EXIT_BOUND seconds.

    plakar's cache daemon (which survives, and ends by itself) may have
    started plugins of its own: they are not plakar's children, and are only
    required to end eventually.
    """
    proc = popen_plakar(env, *args)

    def children() -> dict[int, tuple[int, str]]:
        return {pid: info for pid, info in our_plugins(env).items() if info[0] == proc.pid}

    try:
        start = px.requests
        wait_for(lambda: (len(children()) >= kinds and px.requests > start + 20)
                 or proc.poll() is not None, 90, "plugins at work")
        assert proc.poll() is None, f"plakar ended before the kill: {proc.communicate()[0]}"
        mine = children()
        proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()

        def alive() -> list[int]:
            now = our_plugins(env)
            return [pid for pid, info in mine.items() if pid in now and now[pid][1] == info[1]]

        while alive() and time.monotonic() - killed_at < 10:
            time.sleep(0.02)
        took = time.monotonic() - killed_at
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert not alive(), f"plugin processes still running: {alive()}"
    assert took <= EXIT_BOUND, f"plugins {sorted(mine)} took {took:.2f} s to exit"
    wait_for(lambda: not our_plugins(env), 30, "the cache daemon's plugins to end")
    assert not leftovers(env)


def test_plakar_killed_during_backup_and_restore(
    azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path
) -> None:
    container = new_container(azurite, "fkill")
    fill_tricky(container)
    add_small_blobs(container, 60)
    kstore = new_container(azurite, "fkstore")
    target = new_container(azurite, "fkdst")
    with proxy(azurite, delay=0.05) as px:
        endpoint = px.endpoint(ACCOUNT)
        pk(azplakar, "source", "add", "src", f"azblob://{container.container_name}",
           *key_options(endpoint))
        pk(azplakar, "store", "add", "azst", f"azblob://{kstore.container_name}",
           *key_options(endpoint))
        pk(azplakar, "destination", "add", "dst", f"azblob://{target.container_name}",
           *key_options(endpoint))
        pk(azplakar, "at", "@azst", "create")

        # Backup from an azblob source into an azblob store: importer + storage.
        kill_mid_way(azplakar, px, 2, "at", "@azst", "backup", "@src")

        # A complete backup, then a restore from the store to a container, killed.
        px.delay = 0
        snap = snapshot_id(pk(azplakar, "at", "@azst", "backup", "@src"))
        px.delay = 0.05
        kill_mid_way(azplakar, px, 2, "at", "@azst", "restore", "-to", "@dst", snap)


# -- 5. two concurrent creates on one location --

def race(env: PlakarEnv, *args: str) -> list[subprocess.CompletedProcess[str]]:
    """Run the same plakar command twice at once (released together by a barrier)."""
    barrier = threading.Barrier(2, timeout=30)
    results: list[subprocess.CompletedProcess[str]] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        done = env.run(*args, ok=False, timeout=TIMEOUT)
        with lock:
            results.append(done)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT + 10)
    assert len(results) == 2, "a create did not finish in time"
    return results


def test_concurrent_creates_one_wins(azplakar: PlakarEnv, azurite: Azurite) -> None:
    for round_ in range(4):
        name = f"race-{uuid.uuid4().hex[:10]}"  # the container does not exist yet
        alias = f"race{round_}"
        pk(azplakar, "store", "add", alias, f"azblob://{name}/k", *key_options(azurite.endpoint))
        results = race(azplakar, "at", f"@{alias}", "create")
        won = [r for r in results if r.returncode == 0]
        lost = [r for r in results if r.returncode != 0]
        assert len(won) == 1 and len(lost) == 1, [output(r) for r in results]
        assert f"a Kloset store already exists at azblob://{name}/k" in output(lost[0])
        assert "Traceback" not in output(lost[0])
        names = set(blob_listing(service(azurite).get_container_client(name)))
        assert names == {"k/CONFIG"}
        pk(azplakar, "at", f"@{alias}", "ls")  # the winner's store opens
