"""AzureStore against Azurite: layout, create/open, put/get/list/delete, size, tiers."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from azurite import Azurite

from kloset_sdk import (
    AlreadyExistsError,
    ConnectorError,
    IncomingContent,
    Mode,
    NotFoundError,
    Range,
    Resource,
    StoreFlag,
)
from plakar_azblob.storage import AzureStore

pytestmark = pytest.mark.azurite

MiB = 1 << 20
DIRS = {Resource.PACKFILE: "packfiles", Resource.STATE: "states", Resource.LOCK: "locks",
        Resource.ECC_PACKFILE: "ecc-packfiles", Resource.ECC_STATE: "ecc-states"}


def mac_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def content(data: bytes, fail_after: int | None = None) -> IncomingContent:
    """Content fed from another thread in 1 MiB chunks, as the SDK does."""
    c = IncomingContent()

    def feed() -> None:
        for i in range(0, len(data), MiB):
            if fail_after is not None and i >= fail_after:
                c.fail(OSError("plakar went away"))
                return
            c.feed(data[i:i + MiB])
        c.finish()
    threading.Thread(target=feed, daemon=True).start()
    return c


def read(store: AzureStore, resource: Resource, mac: bytes, rng: Range | None = None) -> bytes:
    return b"".join(store.get(resource, mac, rng, StoreFlag.NONE))  # type: ignore[arg-type]


class CountingSemaphore(threading.BoundedSemaphore):
    """Records the most slots held at once."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.size, self.held, self.peak = value, 0, 0
        self.lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        got = super().acquire(blocking, timeout)
        if got:
            with self.lock:
                self.held += 1
                self.peak = max(self.peak, self.held)
        return got

    def release(self, n: int = 1) -> None:
        with self.lock:
            self.held -= n
        super().release(n)


@pytest.fixture
def admin(azurite: Azurite) -> Iterator[ContainerClient]:
    """A fresh container name (not created), administered with the account key."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(f"store-{uuid.uuid4().hex[:12]}")
    yield client
    if client.exists():
        client.delete_container()


StoreFactory = Callable[..., AzureStore]


@pytest.fixture
def make_store(azurite: Azurite, admin: ContainerClient) -> Iterator[StoreFactory]:
    made: list[AzureStore] = []

    def make(prefix: str = "", **opts: str) -> AzureStore:
        location = f"azblob://{admin.container_name}" + (f"/{prefix}" if prefix else "")
        store = AzureStore("azblob", {"location": location,
                                      "connection_string": azurite.connection_string, **opts})
        made.append(store)
        return store
    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Iterator[AzureStore]:
    s = make_store("repo/main", block_size="1MiB", max_concurrency="4")
    s.create(b"the config")
    s._buffers = CountingSemaphore(32)
    yield s
    assert s._buffers.held == 0, "upload buffer slots leaked"


def names(admin: ContainerClient) -> list[str]:
    return sorted(admin.list_blob_names())


# -- identity and layout --

def test_init_fields(azurite: Azurite, make_store: StoreFactory) -> None:
    s = make_store("a%20b//c/")
    assert (s.type, s.root) == ("azblob", "/a b/c")
    assert s.origin == f"127.0.0.1:{azurite.port}/devstoreaccount1/{s.cfg.container}"
    assert make_store().root == "/"


@pytest.mark.parametrize("prefix", ["", "some/prefix"])
def test_blob_names_match_the_go_connector(make_store: StoreFactory, admin: ContainerClient,
                                           prefix: str) -> None:
    s = make_store(prefix)
    s.create(b"cfg")
    mac = bytes(range(0xab, 0xab + 32))
    hexmac = mac.hex()
    for resource in DIRS:
        s.put(resource, mac, content(b"x"), StoreFlag.NONE)
    lead = f"{prefix}/" if prefix else ""
    assert names(admin) == sorted([f"{lead}CONFIG"] + [
        f"{lead}{d}/ab/{hexmac}" for d in DIRS.values()])
    assert hexmac.startswith("abacadaeaf")  # lowercase, first byte as the fan-out


def test_bad_mac(store: AzureStore) -> None:
    with pytest.raises(ConnectorError, match=r"^invalid MAC: 31 bytes instead of 32$"):
        store.put(Resource.PACKFILE, b"\1" * 31, content(b"x"), StoreFlag.NONE)
    with pytest.raises(ConnectorError, match=r"^invalid MAC: 33 bytes instead of 32$"):
        store.get(Resource.PACKFILE, b"\1" * 33, None, StoreFlag.NONE)
    with pytest.raises(ConnectorError, match=r"^invalid MAC: 0 bytes instead of 32$"):
        store.delete(Resource.STATE, b"", StoreFlag.NONE)


def test_undefined_resource(store: AzureStore) -> None:
    with pytest.raises(ConnectorError, match=r"^unsupported resource type 0$"):
        store.list(Resource.UNDEFINED, StoreFlag.NONE)
    with pytest.raises(ConnectorError, match=r"^unsupported resource type 0$"):
        store.put(Resource.UNDEFINED, b"\1" * 32, content(b"x"), StoreFlag.NONE)


# -- create / open / ping / mode --

def test_create_then_open(make_store: StoreFactory, admin: ContainerClient) -> None:
    s = make_store("p")
    config = os.urandom(1000)
    s.create(config)
    assert s.open() == config
    assert make_store("p").open() == config  # another process sees it
    assert admin.download_blob("p/CONFIG").readall() == config


def test_create_twice(make_store: StoreFactory) -> None:
    s = make_store("p")
    s.create(b"first")
    with pytest.raises(AlreadyExistsError) as info:
        make_store("p").create(b"second")
    assert str(info.value) == f"a Kloset store already exists at azblob://{s.cfg.container}/p"
    assert s.open() == b"first"


def test_concurrent_creates_one_wins(make_store: StoreFactory) -> None:
    stores = [make_store("race") for _ in range(8)]
    outcomes: dict[int, str] = {}
    barrier = threading.Barrier(len(stores))

    def create(i: int) -> None:
        barrier.wait()
        try:
            stores[i].create(f"config {i}".encode())
            outcomes[i] = "won"
        except AlreadyExistsError:
            outcomes[i] = "exists"
    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in outcomes.items() if o == "won"]
    assert len(outcomes) == len(stores) and len(winners) == 1
    assert stores[0].open() == f"config {winners[0]}".encode()


def test_open_missing_store(make_store: StoreFactory, admin: ContainerClient) -> None:
    s = make_store("nothing/here")
    with pytest.raises(NotFoundError) as info:
        s.open()  # the container does not exist either
    assert str(info.value).startswith(f"cannot open the Kloset store at azblob://"
                                      f"{admin.container_name}/nothing/here: the container "
                                      "does not exist")
    admin.create_container()
    with pytest.raises(NotFoundError) as info:
        s.open()
    assert str(info.value) == \
        f"no Kloset store at azblob://{admin.container_name}/nothing/here: CONFIG not found"


def test_ping_and_mode(make_store: StoreFactory, admin: ContainerClient) -> None:
    s = make_store()
    with pytest.raises(NotFoundError, match="the container does not exist"):
        s.ping()
    admin.create_container()
    s.ping()
    assert s.mode() == Mode.READ_WRITE


# -- put / get --

@pytest.mark.parametrize("size", [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB + 12345])
def test_put_get_sizes(store: AzureStore, admin: ContainerClient, size: int) -> None:
    data = os.urandom(size)
    mac = mac_of(data)
    assert store.put(Resource.PACKFILE, mac, content(data), StoreFlag.NONE) == size
    assert read(store, Resource.PACKFILE, mac) == data
    name = f"repo/main/packfiles/{mac.hex()[:2]}/{mac.hex()}"
    blob = admin.get_blob_client(name)
    assert blob.get_blob_properties().size == size
    committed = blob.get_block_list("committed")[0]
    if size <= MiB:
        assert committed == []  # one Put Blob request, no block list
    else:
        assert [b.size for b in committed] == [MiB] * (size // MiB) + \
            ([size % MiB] if size % MiB else [])


def test_put_50_mib_default_blocks(make_store: StoreFactory, admin: ContainerClient) -> None:
    s = make_store("big")
    s.create(b"cfg")
    data = os.urandom(50 * MiB)
    mac = mac_of(data)
    assert s.put(Resource.PACKFILE, mac, content(data), StoreFlag.NONE) == len(data)
    blob = admin.get_blob_client(f"big/packfiles/{mac.hex()[:2]}/{mac.hex()}")
    assert [b.size for b in blob.get_block_list("committed")[0]] == [4 * MiB] * 12 + [2 * MiB]
    chunks = list(s.get(Resource.PACKFILE, mac, None, StoreFlag.NONE))  # type: ignore[arg-type]
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= 4 * MiB
    assert hashlib.sha256(b"".join(chunks)).digest() == mac


def test_put_overwrites(store: AzureStore) -> None:
    mac = b"\7" * 32
    store.put(Resource.LOCK, mac, content(b"old lock"), StoreFlag.NONE)
    store.put(Resource.LOCK, mac, content(b"new lock"), StoreFlag.NONE)
    assert read(store, Resource.LOCK, mac) == b"new lock"


@pytest.mark.parametrize("fail_after", [0, 2 * MiB, 5 * MiB])
def test_failed_put_leaves_nothing(store: AzureStore, admin: ContainerClient,
                                   fail_after: int) -> None:
    data = os.urandom(6 * MiB)
    mac = mac_of(data)
    with pytest.raises(ConnectorError) as info:
        store.put(Resource.PACKFILE, mac, content(data, fail_after), StoreFlag.NONE)
    assert str(info.value) == (f'cannot write blob "repo/main/packfiles/{mac.hex()[:2]}/'
                               f'{mac.hex()}": OSError: plakar went away')
    with pytest.raises(NotFoundError):
        store.get(Resource.PACKFILE, mac, None, StoreFlag.NONE)
    assert list(store.list(Resource.PACKFILE, StoreFlag.NONE)) == []
    # Uncommitted blocks are invisible to listings.
    assert names(admin) == ["repo/main/CONFIG"]


def test_failed_put_then_retry(store: AzureStore) -> None:
    data = os.urandom(3 * MiB)
    mac = mac_of(data)
    with pytest.raises(ConnectorError):
        store.put(Resource.PACKFILE, mac, content(data, 2 * MiB), StoreFlag.NONE)
    assert store.put(Resource.PACKFILE, mac, content(data), StoreFlag.NONE) == len(data)
    assert read(store, Resource.PACKFILE, mac) == data


def test_concurrent_puts(store: AzureStore) -> None:
    # Far more puts than buffer slots: every put must still finish (no deadlock),
    # and no more blocks than the slots are ever buffered at once.
    slots = CountingSemaphore(3)
    store._buffers = slots
    blobs = [os.urandom(MiB * (1 + i % 4) + i) for i in range(24)]
    errors: list[BaseException] = []

    def put(data: bytes) -> None:
        try:
            store.put(Resource.PACKFILE, mac_of(data), content(data), StoreFlag.NONE)
        except BaseException as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=put, args=(d,)) for d in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert (slots.peak, slots.held) == (3, 0)
    assert sorted(store.list(Resource.PACKFILE, StoreFlag.NONE)) == sorted(map(mac_of, blobs))
    for data in blobs[:6]:
        assert read(store, Resource.PACKFILE, mac_of(data)) == data


def test_ranged_get(store: AzureStore) -> None:
    data = os.urandom(3 * MiB + 100)
    mac = mac_of(data)
    store.put(Resource.PACKFILE, mac, content(data), StoreFlag.NONE)
    for offset, length in [(0, 1), (10, 100), (MiB - 5, 10), (MiB - 1, 2 * MiB + 2),
                           (3 * MiB, 100), (0, len(data))]:
        assert read(store, Resource.PACKFILE, mac, Range(offset, length)) == \
            data[offset:offset + length]
    # Past the end: what is there, then nothing.
    assert read(store, Resource.PACKFILE, mac, Range(3 * MiB + 50, 1000)) == data[-50:]
    assert read(store, Resource.PACKFILE, mac, Range(len(data), 10)) == b""
    assert read(store, Resource.PACKFILE, mac, Range(5, 0)) == b""


def test_get_missing(store: AzureStore) -> None:
    mac = b"\xfe" * 32
    name = f"repo/main/states/fe/{mac.hex()}"
    for rng in (None, Range(0, 10), Range(0, 0)):
        with pytest.raises(NotFoundError) as info:
            store.get(Resource.STATE, mac, rng, StoreFlag.NONE)  # raised by get() itself
        assert str(info.value) == f'blob "{name}": does not exist (BlobNotFound, HTTP 404)'


def test_get_is_lazy_stream(store: AzureStore) -> None:
    data = os.urandom(3 * MiB)
    store.put(Resource.PACKFILE, mac_of(data), content(data), StoreFlag.NONE)
    out = store.get(Resource.PACKFILE, mac_of(data), None, StoreFlag.NONE)
    assert not isinstance(out, (bytes, bytearray, list))
    chunks = list(out)  # type: ignore[arg-type]
    assert [len(c) for c in chunks] == [MiB] * 3


# -- list --

def test_list(store: AzureStore) -> None:
    macs = {Resource.PACKFILE: [mac_of(b"p%d" % i) for i in range(5)],
            Resource.STATE: [mac_of(b"s%d" % i) for i in range(3)],
            Resource.LOCK: [mac_of(b"l")]}
    for resource, group in macs.items():
        for mac in group:
            store.put(resource, mac, content(b"v"), StoreFlag.NONE)
    for resource, group in macs.items():
        assert sorted(store.list(resource, StoreFlag.NONE)) == sorted(group)
    assert list(store.list(Resource.ECC_PACKFILE, StoreFlag.NONE)) == []


def test_list_pages(store: AzureStore) -> None:
    group = sorted(mac_of(b"%d" % i) for i in range(23))
    for mac in group:
        store.put(Resource.STATE, mac, content(b"s"), StoreFlag.NONE)
    store.list_page_size = 5
    assert sorted(store.list(Resource.STATE, StoreFlag.NONE)) == group


def test_list_exact_prefix(store: AzureStore, admin: ContainerClient) -> None:
    mac = mac_of(b"mine")
    store.put(Resource.PACKFILE, mac, content(b"mine"), StoreFlag.NONE)
    other = mac_of(b"other").hex()
    for name in (f"repo/mainX/packfiles/{other[:2]}/{other}",  # a sibling prefix
                 f"repo/main/packfilesX/{other[:2]}/{other}",  # a sibling directory
                 f"repo/main/packfiles.bak/{other[:2]}/{other}",
                 f"repo/{other}", "repo/main2/CONFIG"):
        admin.upload_blob(name, b"not ours")
    assert list(store.list(Resource.PACKFILE, StoreFlag.NONE)) == [mac]


def test_list_skips_fanout_directories(store: AzureStore, admin: ContainerClient) -> None:
    # Accounts with a hierarchical namespace list the XX directories as blobs.
    mac = mac_of(b"x")
    store.put(Resource.PACKFILE, mac, content(b"x"), StoreFlag.NONE)
    admin.upload_blob(f"repo/main/packfiles/{mac.hex()[:2]}", b"")
    assert list(store.list(Resource.PACKFILE, StoreFlag.NONE)) == [mac]


@pytest.mark.parametrize("bad", [
    "ab/notamac",
    "ab/" + "AB" * 32,  # uppercase hex
    "cd/" + "ab" * 32,  # fan-out does not match
    "ab/" + "ab" * 31,  # too short
    "ab/" + "ab" * 32 + "/x",
    "stray.txt",
])
def test_list_malformed_name(store: AzureStore, admin: ContainerClient, bad: str) -> None:
    admin.upload_blob(f"repo/main/packfiles/{bad}", b"?")
    with pytest.raises(ConnectorError) as info:
        list(store.list(Resource.PACKFILE, StoreFlag.NONE))
    assert str(info.value) == (f'unexpected blob "repo/main/packfiles/{bad}": not a Kloset '
                               "object name (repo/main/packfiles/XX/<64 hex digits>)")


def test_list_missing_container(make_store: StoreFactory) -> None:
    with pytest.raises(NotFoundError) as info:
        make_store("p").list(Resource.PACKFILE, StoreFlag.NONE)  # raised by list() itself
    assert str(info.value) == ('cannot list "p/packfiles/": the container does not exist '
                               "(ContainerNotFound, HTTP 404)")


# -- delete / size --

def test_delete(store: AzureStore) -> None:
    mac = mac_of(b"doomed")
    store.put(Resource.STATE, mac, content(b"doomed"), StoreFlag.NONE)
    store.delete(Resource.STATE, mac, StoreFlag.NONE)
    assert list(store.list(Resource.STATE, StoreFlag.NONE)) == []
    with pytest.raises(NotFoundError):
        store.get(Resource.STATE, mac, None, StoreFlag.NONE)
    with pytest.raises(NotFoundError) as info:
        store.delete(Resource.STATE, mac, StoreFlag.NONE)
    assert str(info.value) == (f'cannot delete blob "repo/main/states/{mac.hex()[:2]}/'
                               f'{mac.hex()}": does not exist (BlobNotFound, HTTP 404)')


def test_size(store: AzureStore, admin: ContainerClient) -> None:
    assert store.size() == len(b"the config")
    sizes = [0, 1, 1000, 2 * MiB + 3]
    for i, n in enumerate(sizes):
        store.put(Resource.PACKFILE, mac_of(b"%d" % i), content(os.urandom(n)), StoreFlag.NONE)
    admin.upload_blob("repo/mainX/CONFIG", b"x" * 999)  # another store: not counted
    admin.upload_blob("elsewhere", b"x" * 999)
    assert store.size() == len(b"the config") + sum(sizes)


def test_size_whole_container(make_store: StoreFactory, admin: ContainerClient) -> None:
    s = make_store()
    s.create(b"12345")
    admin.upload_blob("other/thing", b"x" * 10)
    assert s.size() == 15


# -- tiers --

def tier_of(admin: ContainerClient, name: str) -> str:
    return str(admin.get_blob_client(name).get_blob_properties().blob_tier)


@pytest.mark.parametrize("tier", ["cool", "cold"])
def test_tier_applies_to_cold_packfiles_only(make_store: StoreFactory, admin: ContainerClient,
                                             tier: str) -> None:
    s = make_store("t", tier=tier, block_size="1MiB")
    s.create(b"cfg")
    expected = tier.capitalize()
    cold, hot, big = mac_of(b"cold"), mac_of(b"hot"), mac_of(b"big")
    s.put(Resource.PACKFILE, cold, content(b"cold"), StoreFlag.NONE)
    s.put(Resource.PACKFILE, hot, content(b"hot"), StoreFlag.HOT)
    s.put(Resource.PACKFILE, big, content(os.urandom(3 * MiB)), StoreFlag.NONE)  # block commit
    s.put(Resource.ECC_PACKFILE, cold, content(b"ecc"), StoreFlag.NONE)
    s.put(Resource.STATE, cold, content(b"state"), StoreFlag.NONE)
    s.put(Resource.LOCK, cold, content(b"lock"), StoreFlag.NONE)

    def name(d: str, mac: bytes) -> str:
        return f"t/{d}/{mac.hex()[:2]}/{mac.hex()}"
    assert tier_of(admin, name("packfiles", cold)) == expected
    assert tier_of(admin, name("packfiles", big)) == expected
    assert tier_of(admin, name("ecc-packfiles", cold)) == expected
    assert tier_of(admin, name("packfiles", hot)) == "Hot"
    assert tier_of(admin, name("states", cold)) == "Hot"
    assert tier_of(admin, name("locks", cold)) == "Hot"
    assert tier_of(admin, "t/CONFIG") == "Hot"
    assert read(s, Resource.PACKFILE, cold) == b"cold"


def test_no_tier_by_default(store: AzureStore, admin: ContainerClient) -> None:
    mac = mac_of(b"p")
    store.put(Resource.PACKFILE, mac, content(b"p"), StoreFlag.NONE)
    props = admin.get_blob_client(f"repo/main/packfiles/{mac.hex()[:2]}/{mac.hex()}") \
        .get_blob_properties()
    assert props.blob_tier_inferred  # the account's default tier, nothing set by us


def test_usable_after_close(store: AzureStore) -> None:
    # kloset deletes its lock from a goroutine that races plakar's Close.
    lock = mac_of(b"a lock")
    store.put(Resource.LOCK, lock, content(b"lock"), StoreFlag.NONE)
    store.close()
    assert list(store.list(Resource.LOCK, StoreFlag.NONE)) == [lock]
    store.delete(Resource.LOCK, lock, StoreFlag.NONE)
    assert list(store.list(Resource.LOCK, StoreFlag.NONE)) == []
    store.close()
    store.close()
