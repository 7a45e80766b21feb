"""Every authentication method, against Azurite (Entra ID: client building and failures only)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)
from azurite import ACCOUNT, KEY, Azurite, free_port

from kloset_sdk import (
    ConnectorError,
    IncomingContent,
    Mode,
    NotFoundError,
    PermissionDeniedError,
    Resource,
    StoreFlag,
)
from plakar_azblob.clients.config import parse_config
from plakar_azblob.clients.factory import container_client
from plakar_azblob.storage import AzureStore

pytestmark = pytest.mark.azurite

DATA = b"a packfile's worth of bytes"
MAC = hashlib.sha256(DATA).digest()


def content(data: bytes) -> IncomingContent:
    c = IncomingContent()

    def feed() -> None:
        for i in range(0, len(data), 1 << 20):
            c.feed(data[i:i + (1 << 20)])
        c.finish()
    threading.Thread(target=feed, daemon=True).start()
    return c


def read(store: AzureStore, resource: Resource, mac: bytes) -> bytes:
    return b"".join(store.get(resource, mac, None, StoreFlag.NONE))  # type: ignore[arg-type]


@pytest.fixture
def container(azurite: Azurite) -> Iterator[ContainerClient]:
    """A fresh, empty, private container, administered with the account key."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(f"auth-{uuid.uuid4().hex[:12]}")
    client.create_container()
    yield client
    client.delete_container()


def sas(container: ContainerClient, **perms: bool) -> str:
    return generate_container_sas(
        ACCOUNT, container.container_name, account_key=KEY,
        permission=ContainerSasPermissions(**perms),
        expiry=datetime.now(UTC) + timedelta(hours=1))


def roundtrip(store: AzureStore) -> None:
    """What every read-write method must allow: a whole store life cycle."""
    store.create(b"CONFIG bytes")
    store.ping()
    assert store.open() == b"CONFIG bytes"
    assert store.put(Resource.PACKFILE, MAC, content(DATA), StoreFlag.NONE) == len(DATA)
    assert read(store, Resource.PACKFILE, MAC) == DATA
    assert list(store.list(Resource.PACKFILE, StoreFlag.NONE)) == [MAC]
    assert store.mode() == Mode.READ_WRITE


def test_connection_string(azurite: Azurite, container: ContainerClient) -> None:
    store = AzureStore("azblob", {"location": f"azblob://{container.container_name}/cs",
                                  "connection_string": azurite.connection_string})
    assert store.cfg.auth_method == "connection_string"
    assert store.origin == f"127.0.0.1:{azurite.port}/{ACCOUNT}/{container.container_name}"
    roundtrip(store)
    assert container.download_blob("cs/CONFIG").readall() == b"CONFIG bytes"


def test_connection_string_creates_the_container(azurite: Azurite) -> None:
    name = f"new-{uuid.uuid4().hex[:12]}"
    store = AzureStore("azblob", {"location": f"azblob://{name}",
                                  "connection_string": azurite.connection_string})
    with pytest.raises(NotFoundError, match="the container does not exist"):
        store.ping()
    roundtrip(store)


def test_account_key(azurite: Azurite, container: ContainerClient) -> None:
    store = AzureStore("azblob", {"location": f"azblob://{container.container_name}",
                                  "account_name": ACCOUNT, "account_key": KEY,
                                  "endpoint": azurite.endpoint})
    assert store.cfg.auth_method == "account_key"
    roundtrip(store)


def test_wrong_account_key(azurite: Azurite, container: ContainerClient) -> None:
    wrong = KEY[:-8] + "AAAAAAA="
    store = AzureStore("azblob", {"location": f"azblob://{container.container_name}",
                                  "account_name": ACCOUNT, "account_key": wrong,
                                  "endpoint": azurite.endpoint})
    with pytest.raises(PermissionDeniedError) as info:
        store.ping()
    msg = str(info.value)
    assert msg.startswith(f"cannot access azblob://{container.container_name}: ")
    assert "HTTP 403" in msg and "\n" not in msg and wrong not in msg


def test_sas_read_write(azurite: Azurite, container: ContainerClient) -> None:
    token = sas(container, read=True, list=True, write=True, create=True)
    store = AzureStore("azblob", {"location": f"azblob://{container.container_name}/p",
                                  "sas_token": "?" + token, "endpoint": azurite.endpoint})
    assert store.cfg.auth_method == "sas"
    # A container SAS cannot create containers: create() must go on with the existing one.
    roundtrip(store)
    # Delete was not granted: refused, with a clear one-line message and no signature.
    with pytest.raises(PermissionDeniedError) as info:
        store.delete(Resource.PACKFILE, MAC, StoreFlag.NONE)
    msg = str(info.value)
    assert msg.startswith('cannot delete blob "p/packfiles/')
    assert "permission" in msg and "sig=" not in msg and "\n" not in msg


def test_sas_in_connection_string(azurite: Azurite, container: ContainerClient) -> None:
    token = sas(container, read=True, list=True, write=True, create=True, delete=True)
    conn = f"BlobEndpoint={azurite.endpoint};SharedAccessSignature={token}"
    store = AzureStore("azblob", {"location": f"azblob://{container.container_name}",
                                  "connection_string": conn})
    roundtrip(store)
    store.delete(Resource.PACKFILE, MAC, StoreFlag.NONE)
    assert list(store.list(Resource.PACKFILE, StoreFlag.NONE)) == []


def test_sas_read_only(azurite: Azurite, container: ContainerClient) -> None:
    container.upload_blob("ro/CONFIG", b"cfg")
    container.upload_blob(f"ro/packfiles/{MAC.hex()[:2]}/{MAC.hex()}", DATA)
    token = sas(container, read=True, list=True)
    signature = token.split("sig=")[1]
    store = AzureStore("azblob", {"location": f"azblob://{container.container_name}/ro",
                                  "sas_token": token, "endpoint": azurite.endpoint})
    assert store.mode() == Mode.READ
    store.ping()
    assert store.open() == b"cfg"
    assert read(store, Resource.PACKFILE, MAC) == DATA
    assert list(store.list(Resource.PACKFILE, StoreFlag.NONE)) == [MAC]
    other = hashlib.sha256(b"other").digest()
    with pytest.raises(PermissionDeniedError) as info:
        store.put(Resource.PACKFILE, other, content(b"other"), StoreFlag.NONE)
    msg = str(info.value)
    assert msg == (f'cannot write blob "ro/packfiles/{other.hex()[:2]}/{other.hex()}": '
                   "the credentials lack the permission for this operation "
                   "(AuthorizationPermissionMismatch, HTTP 403): the store is read-only "
                   'with this SAS token (permissions "rl")')
    assert signature not in msg
    with pytest.raises(PermissionDeniedError) as info:
        store.create(b"new config")
    assert str(info.value).endswith('the store is read-only with this SAS token '
                                    '(permissions "rl")')
    with pytest.raises(PermissionDeniedError) as info:
        store.delete(Resource.PACKFILE, MAC, StoreFlag.NONE)
    assert "read-only" in str(info.value) and signature not in str(info.value)


def test_sas_write_only_mode(azurite: Azurite, container: ContainerClient) -> None:
    store = AzureStore("azblob", {"location": f"azblob://{container.container_name}",
                                  "sas_token": sas(container, write=True, create=True),
                                  "endpoint": azurite.endpoint})
    assert store.mode() == Mode.WRITE


def test_no_auth_public_container(azurite: Azurite) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    admin = service.get_container_client(f"public-{uuid.uuid4().hex[:12]}")
    admin.create_container(public_access="container")
    try:
        admin.upload_blob("CONFIG", b"public config")
        admin.upload_blob(f"packfiles/{MAC.hex()[:2]}/{MAC.hex()}", DATA)
        store = AzureStore("azblob", {"location": f"azblob://{admin.container_name}",
                                      "no_auth": "true", "endpoint": azurite.endpoint})
        assert store.cfg.auth_method == "anonymous"
        assert store.mode() == Mode.READ
        store.ping()
        assert store.open() == b"public config"
        assert read(store, Resource.PACKFILE, MAC) == DATA
        assert list(store.list(Resource.PACKFILE, StoreFlag.NONE)) == [MAC]
        assert store.size() == len(b"public config") + len(DATA)
        with pytest.raises(PermissionDeniedError) as info:
            store.put(Resource.STATE, MAC, content(b"x"), StoreFlag.NONE)
        assert str(info.value).startswith(f'cannot write blob "states/{MAC.hex()[:2]}/')
        assert str(info.value).endswith("(AuthorizationFailure, HTTP 403): the store is "
                                        "read-only with no_auth=true")
    finally:
        admin.delete_container()


def test_no_auth_private_container(azurite: Azurite, container: ContainerClient) -> None:
    store = AzureStore("azblob", {"location": f"azblob://{container.container_name}",
                                  "no_auth": "true", "endpoint": azurite.endpoint})
    with pytest.raises(PermissionDeniedError) as info:
        store.open()
    assert str(info.value) == (f"cannot open the Kloset store at "
                               f"azblob://{container.container_name}: the credentials are "
                               "not allowed to do this (AuthorizationFailure, HTTP 403)")


def test_unreachable_endpoint_fails_fast() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/{ACCOUNT}"
    store = AzureStore("azblob", {"location": "azblob://nowhere", "account_name": ACCOUNT,
                                  "account_key": KEY, "endpoint": endpoint})
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        store.ping()
    assert time.monotonic() - started < 10
    assert str(info.value) == f"cannot access azblob://nowhere: cannot reach {endpoint}: " \
                              "connection refused"


# -- Microsoft Entra ID: no token service here, so only the client and its failures --

@pytest.fixture
def no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(name)


def test_entra_default_credential(no_azure_env: None) -> None:
    from azure.identity import DefaultAzureCredential

    cfg = parse_config({"location": "azblob://entra", "account_name": "nosuchacct0"}, "storage")
    client = container_client(cfg)
    assert isinstance(client.credential.inner, DefaultAzureCredential)
    assert client.url == "https://nosuchacct0.blob.core.windows.net/entra"
    store = AzureStore("azblob", {"location": "azblob://entra", "account_name": "nosuchacct0"})
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        store.ping()
    assert time.monotonic() - started < 30
    msg = str(info.value)
    assert msg.startswith("cannot access azblob://entra: ") and "\n" not in msg
    # Normally no credential is found; on a machine with one, the host is unreachable here.
    assert "Microsoft Entra ID token" in msg or "cannot reach" in msg


def test_entra_client_secret(no_azure_env: None) -> None:
    from azure.identity import ClientSecretCredential

    opts = {"location": "azblob://entra", "endpoint": "https://127.0.0.1:1/acct",
            "tenant_id": "00000000-0000-0000-0000-000000000000",
            "client_id": "11111111-1111-1111-1111-111111111111",
            "client_secret": "CLIENT-SECRET-VALUE"}
    client = container_client(parse_config(opts, "storage"))
    assert isinstance(client.credential.inner, ClientSecretCredential)
    store = AzureStore("azblob", opts)
    started = time.monotonic()
    with pytest.raises(PermissionDeniedError) as info:
        store.ping()
    assert time.monotonic() - started < 30
    msg = str(info.value)
    assert msg.startswith("cannot access azblob://entra: cannot get a Microsoft Entra ID token: ")
    assert "CLIENT-SECRET-VALUE" not in msg and "\n" not in msg


def test_azure_identity_is_imported_lazily(azurite: Azurite) -> None:
    code = (
        "import sys\n"
        "from plakar_azblob.storage import AzureStore\n"
        f"s = AzureStore('azblob', {{'location': 'azblob://lazy', "
        f"'connection_string': {azurite.connection_string!r}}})\n"
        "assert 'azure.identity' not in sys.modules, 'azure.identity was imported'\n"
        "s = AzureStore('azblob', {'location': 'azblob://lazy', 'account_name': 'acct'})\n"
        "assert 'azure.identity' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
