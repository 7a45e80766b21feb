"""Direct blob reads (plakar_azblob.direct) against Azurite, and the source's use of them."""

from __future__ import annotations

import gzip
import os
from typing import Any

import pytest
from azblob_helpers import new_container, sas
from azure.core.credentials import AccessToken
from azure.storage.blob import ContainerClient, ContentSettings
from azurite import Azurite

from kloset_sdk import ConnectorError, Options, iter_chunks
from plakar_azblob import source as source_module
from plakar_azblob.direct import DirectReader
from plakar_azblob.source import AzureImporter

pytestmark = pytest.mark.azurite
MiB = 1024 * 1024
NAME = "dir/ünï cødé #?%.bin"
DATA = os.urandom(3 * MiB + 5)


@pytest.fixture(scope="module")
def container(azurite: Azurite) -> ContainerClient:
    c = new_container(azurite, "direct")
    c.upload_blob(NAME, DATA)
    c.upload_blob("zipped.txt", gzip.compress(b"text " * 100),
                  content_settings=ContentSettings(content_encoding="gzip"))
    c.upload_blob("empty", b"")
    return c


def etag_of(container: ContainerClient, name: str) -> str:
    return str(container.get_blob_client(name).get_blob_properties().etag)


def test_reads_whole_blobs_and_ranges(container: ContainerClient) -> None:
    reader = DirectReader.for_client(container, 4)
    assert reader is not None
    whole = reader.read(NAME, 0, None)
    assert whole is not None and whole.data == DATA and whole.size == len(DATA)
    part = reader.read(NAME, MiB, 1000)
    assert part is not None and part.data == DATA[MiB:MiB + 1000] and part.size == len(DATA)
    assert part.etag.strip('"') == etag_of(container, NAME).strip('"')
    # Past the end: only with shorter=True.
    assert reader.read(NAME, len(DATA) - 5, 100) is None
    tail = reader.read(NAME, len(DATA) - 5, 100, shorter=True)
    assert tail is not None and tail.data == DATA[-5:]
    empty = reader.read("empty", 0, None)
    assert empty is not None and empty.data == b""
    # Content-Encoding is not undone: the bytes as stored.
    zipped = reader.read("zipped.txt", 0, None)
    assert zipped is not None and gzip.decompress(zipped.data) == b"text " * 100


def test_anything_unexpected_is_none(container: ContainerClient) -> None:
    reader = DirectReader.for_client(container, 4)
    assert reader is not None
    assert reader.read("missing", 0, 10) is None
    assert reader.read(NAME, 0, 10, etag='"0x8D000000000000"') is None  # changed since
    etag = etag_of(container, NAME)
    for given in (etag, etag.strip('"')):  # quoted (headers) or bare (listings)
        answer = reader.read(NAME, 0, 10, etag=given)
        assert answer is not None and answer.data == DATA[:10]
    reader.close()


def test_sas_and_anonymous_access(azurite: Azurite) -> None:
    c = new_container(azurite, "direct-pub", public_access="container")
    c.upload_blob("x", b"public bytes")
    token = sas(c, read=True, list=True)
    with_sas = ContainerClient(azurite.endpoint, c.container_name, credential=token)
    anonymous = ContainerClient(azurite.endpoint, c.container_name)
    for client in (with_sas, anonymous):
        reader = DirectReader.for_client(client, 4)
        assert reader is not None
        answer = reader.read("x", 0, None)
        assert answer is not None and answer.data == b"public bytes"
    private = new_container(azurite, "direct-sas")
    private.upload_blob("x", b"private bytes")
    token = sas(private, read=True)
    good = ContainerClient(azurite.endpoint, private.container_name, credential=token)
    bad = ContainerClient(azurite.endpoint, private.container_name,
                          credential=token.replace("sig=", "sig=AAAA"))
    reader = DirectReader.for_client(good, 4)
    assert reader is not None and reader.read("x", 0, None) is not None
    reader = DirectReader.for_client(bad, 4)
    assert reader is not None and reader.read("x", 0, None) is None  # refused: 403


class _Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", 2**31)


def test_left_to_the_sdk_tokens_and_proxies(azurite: Azurite,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    entra = ContainerClient("https://acc.blob.core.windows.net", "c", credential=_Token())
    assert DirectReader.for_client(entra, 4) is None
    keyed = ContainerClient.from_connection_string(azurite.connection_string, "c")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert DirectReader.for_client(keyed, 4) is None
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert DirectReader.for_client(keyed, 4) is not None


def _importer(azurite: Azurite, container: ContainerClient) -> AzureImporter:
    return AzureImporter("azblob", {"location": f"azblob://{container.container_name}",
                                    "connection_string": azurite.connection_string,
                                    "block_size": "1MiB"}, Options())


def _contents(importer: AzureImporter) -> dict[str, bytes]:
    out = {}
    for record in importer.scan():
        if record.opener is not None and not record.is_xattr:
            out[record.pathname] = b"".join(iter_chunks(record.opener()))
    return out


def test_the_source_reads_directly(azurite: Azurite, container: ContainerClient,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sdk(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("read through the Azure SDK")

    monkeypatch.setattr(source_module, "read_range", no_sdk)
    contents = _contents(_importer(azurite, container))
    assert contents["/" + NAME] == DATA and contents["/empty"] == b""


def test_the_source_falls_back_to_the_sdk(azurite: Azurite, container: ContainerClient,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DirectReader, "read", lambda *args, **kwargs: None)
    importer = _importer(azurite, container)
    assert _contents(importer)["/" + NAME] == DATA
    # And its errors are the SDK's, as before: a blob changed since the listing.
    c = new_container(azurite, "direct-change")
    c.upload_blob("changing", b"a" * 100)
    importer = _importer(azurite, c)
    [record] = [r for r in importer.scan() if r.opener is not None]
    c.upload_blob("changing", b"b" * 100, overwrite=True)
    assert record.opener is not None
    with pytest.raises(ConnectorError, match="changed or was deleted after it was listed"):
        list(iter_chunks(record.opener()))


def test_the_store_reads_and_lists_directly(azurite: Azurite,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.storage.blob import BlobClient

    from kloset_sdk import IncomingContent, Range, Resource, StoreFlag
    from plakar_azblob.storage import AzureStore

    c = new_container(azurite, "direct-store")
    store = AzureStore("azblob", {"location": f"azblob://{c.container_name}/repo",
                                  "connection_string": azurite.connection_string,
                                  "block_size": "1MiB"})
    store.create(b"config")
    macs = [bytes([i]) * 32 for i in range(3)]
    for mac in macs:
        content = IncomingContent(source=iter([DATA]))
        store.put(Resource.PACKFILE, mac, content, StoreFlag.NONE)

    def no_sdk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("read through the Azure SDK")

    monkeypatch.setattr(BlobClient, "download_blob", no_sdk)
    monkeypatch.setattr(ContainerClient, "list_blob_names", no_sdk)
    assert store.open() == b"config"
    assert sorted(store.list(Resource.PACKFILE, StoreFlag.NONE)) == macs
    whole = b"".join(iter_chunks(store.get(Resource.PACKFILE, macs[0], None, StoreFlag.NONE)))
    assert whole == DATA
    part = store.get(Resource.PACKFILE, macs[1], Range(MiB - 3, 2 * MiB), StoreFlag.NONE)
    assert b"".join(iter_chunks(part)) == DATA[MiB - 3:3 * MiB - 3]
    store.close()
