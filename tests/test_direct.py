"""Direct blob reads (plakar_azblob.transfer.direct) against Azurite: what they read, the errors
they raise (the Azure SDK's own), the credentials they take, and the SDK's objects
taking over (counted) only when the direct path cannot be built."""

from __future__ import annotations

import ast
import gzip
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azblob_helpers import new_container, sas
from azure.core import MatchConditions
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import ContainerClient, ContentSettings
from azurite import Azurite

from kloset_sdk import ConnectorError, Options, each_record, iter_chunks
from plakar_azblob import source as source_module
from plakar_azblob.clients.errors import error_code, translate
from plakar_azblob.source import AzureImporter
from plakar_azblob.transfer.direct import FALLBACKS, DirectReader

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


def reader(client: ContainerClient) -> DirectReader:
    found = DirectReader.for_client(client, 4)
    assert found is not None
    return found


def etag_of(container: ContainerClient, name: str) -> str:
    return str(container.get_blob_client(name).get_blob_properties().etag)


def test_reads_whole_blobs_and_ranges(container: ContainerClient) -> None:
    direct = reader(container)
    whole = direct.read(NAME, 0, None)
    assert whole.data == DATA and whole.size == len(DATA)
    part = direct.read(NAME, MiB, 1000)
    assert part.data == DATA[MiB:MiB + 1000] and part.size == len(DATA)
    assert part.etag.strip('"') == etag_of(container, NAME).strip('"')
    # Past the end: only with shorter=True.
    with pytest.raises(EOFError):
        direct.read(NAME, len(DATA) - 5, 100)
    assert direct.read(NAME, len(DATA) - 5, 100, shorter=True).data == DATA[-5:]
    assert direct.read("empty", 0, None).data == b""
    # Content-Encoding is not undone: the bytes as stored.
    assert gzip.decompress(direct.read("zipped.txt", 0, None).data) == b"text " * 100
    etag = etag_of(container, NAME)
    for given in (etag, etag.strip('"')):  # quoted (headers) or bare (listings)
        assert direct.read(NAME, 0, 10, etag=given).data == DATA[:10]
    streamed = direct.stream(NAME, 5, etag, 1000)
    assert b"".join(streamed.pieces) == DATA[5:] and streamed.size == len(DATA)
    direct.close()


def _raised(call: Callable[[], Any]) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as info:
        call()
    return info.value


@pytest.mark.parametrize("case", ["missing blob", "changed blob", "missing container",
                                  "range past the end", "refused SAS"])
def test_error_answers_raise_what_the_sdk_raises(azurite: Azurite, container: ContainerClient,
                                                 case: str) -> None:
    """Same exception type, status, error code, and one-line error as through the SDK."""
    client, name, offset, length = container, NAME, 0, 10
    condition: dict[str, Any] = {}
    if case == "missing blob":
        name = "missing"
    elif case == "changed blob":
        condition = {"etag": '"0x8D000000000000"'}
    elif case == "missing container":
        client = ContainerClient.from_connection_string(azurite.connection_string, "nosuch")
    elif case == "range past the end":
        offset = len(DATA) + 10
    else:
        token = sas(container, read=True).replace("sig=", "sig=AAAA")
        client = ContainerClient(azurite.endpoint, container.container_name, credential=token)
    sdk_condition = {**condition, "match_condition": MatchConditions.IfNotModified} \
        if condition else {}
    ours = _raised(lambda: reader(client).read(name, offset, length, **condition))
    sdk = _raised(lambda: client.download_blob(name, offset, length,
                                               **sdk_condition).readall())
    assert type(ours) is type(sdk)
    assert (ours.status_code, error_code(ours)) == (sdk.status_code, error_code(sdk))
    ours_line, sdk_line = translate(ours, "cannot read"), translate(sdk, "cannot read")
    assert (type(ours_line), str(ours_line)) == (type(sdk_line), str(sdk_line))
    assert "\n" not in str(ours_line)


def test_sas_and_anonymous_access(azurite: Azurite) -> None:
    c = new_container(azurite, "direct-pub", public_access="container")
    c.upload_blob("x", b"public bytes")
    token = sas(c, read=True, list=True)
    with_sas = ContainerClient(azurite.endpoint, c.container_name, credential=token)
    anonymous = ContainerClient(azurite.endpoint, c.container_name)
    for client in (with_sas, anonymous):
        assert reader(client).read("x", 0, None).data == b"public bytes"


class _Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", 2**31)


def test_every_credential_and_proxy_gets_the_direct_path(
        azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    entra = ContainerClient("https://acc.blob.core.windows.net", "c", credential=_Token())
    assert DirectReader.for_client(entra, 4) is not None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    keyed = ContainerClient.from_connection_string(azurite.connection_string, "c")
    assert DirectReader.for_client(keyed, 4) is not None


def test_no_direct_path_without_the_clients_credential_policy(
        azurite: Azurite, caplog: pytest.LogCaptureFixture) -> None:
    """An SDK whose client no longer has it: no direct path, and the log says why."""
    client = ContainerClient.from_connection_string(azurite.connection_string, "c")
    del client._credential_policy
    with caplog.at_level(logging.DEBUG, logger="plakar_azblob.transfer.direct"):
        assert DirectReader.for_client(client, 4) is None
    assert "no direct path: the Azure SDK client's credential policy is missing" in caplog.text


def _importer(azurite: Azurite, container: ContainerClient) -> AzureImporter:
    return AzureImporter("azblob", {"location": f"azblob://{container.container_name}",
                                    "connection_string": azurite.connection_string,
                                    "block_size": "1MiB"}, Options())


def _contents(importer: AzureImporter) -> dict[str, bytes]:
    out = {}
    for record in each_record(importer.scan()):
        if record.opener is not None and not record.is_xattr:
            out[record.pathname] = b"".join(iter_chunks(record.opener()))
    return out


def test_the_source_reads_directly(azurite: Azurite, container: ContainerClient,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sdk(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("read through the Azure SDK")

    monkeypatch.setattr(source_module, "read_range", no_sdk)
    monkeypatch.setattr(ContainerClient, "list_blobs", no_sdk)
    before = sum(FALLBACKS.values())
    contents = _contents(_importer(azurite, container))
    assert contents["/" + NAME] == DATA and contents["/empty"] == b""
    assert sum(FALLBACKS.values()) == before


def test_the_source_falls_back_to_the_sdk_counted_and_logged(
        azurite: Azurite, container: ContainerClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(DirectReader, "for_client", lambda *args: None)
    before = FALLBACKS.copy()
    with caplog.at_level(logging.DEBUG, logger="plakar_azblob.transfer.direct"):
        contents = _contents(_importer(azurite, container))
    assert contents["/" + NAME] == DATA and contents["/empty"] == b""
    assert FALLBACKS["listing"] == before["listing"] + 1
    assert FALLBACKS["read"] == before["read"] + 3
    assert "request made through the Azure SDK instead of the direct path: read" in caplog.text
    # And its errors are the SDK's, as on the direct path: a blob changed since the listing.
    c = new_container(azurite, "direct-change")
    c.upload_blob("changing", b"a" * 100)
    importer = _importer(azurite, c)
    [record] = [r for r in each_record(importer.scan()) if r.opener is not None]
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
    small = store.get(Resource.PACKFILE, macs[2], Range(10, 1000), StoreFlag.NONE)
    assert b"".join(iter_chunks(small)) == DATA[10:1010]
    store.close()


# Calls that send HTTP requests (or make the clients that do), in the sources.
_HTTP_CALLS = re.compile(r"urlopen\(|\.request\(|Session\(|PoolManager\(|ProxyManager\(|"
                         r"requests\.(get|post|put|head|delete|patch|options)\(|"
                         r"HTTPS?Connection\(|create_connection\(|urllib\.request|"
                         r"import http\.client|from http\.client|from http import client")


def test_only_azure_core_transports_send_http_requests() -> None:
    """Nothing in src/ sends an HTTP request outside azure-core's pipeline: urllib3 is
    called by our azure-core transport's ``send`` alone, and requests' session is the
    one handed to azure-core's RequestsTransport (the SDK's clients)."""
    root = Path(__file__).resolve().parent.parent
    found = set()
    for path in sorted((root / "src").rglob("*.py")):
        tree = ast.parse(path.read_text())
        scopes = {}  # line -> the innermost function or class defining it
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                    if line not in scopes or scopes[line][0] < node.lineno:
                        scopes[line] = (node.lineno, node.name)
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = _HTTP_CALLS.search(line.split("#")[0])
            if match:
                found.add((path.name, scopes.get(number, (0, "<module>"))[1], match.group()))
    assert found == {
        ("factory.py", "_transport", "Session("),  # -> RequestsTransport(session=...)
        ("http_transport.py", "__init__", "PoolManager("),  # Urllib3Transport's pools
        ("http_transport.py", "send", "urlopen("),  # Urllib3Transport.send
        ("http_transport.py", "_proxy_manager", "ProxyManager("),
    }, found


def test_a_bearer_challenge_gets_a_new_token_and_one_more_try() -> None:
    """The SDK client's bearer policy, shared by the direct pipeline: a 401 with
    ``WWW-Authenticate`` asks it for a new token (its on_challenge), then tries once
    more, as its own send does; the SDK pipeline it belongs to is left as it was."""
    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport

    from plakar_azblob.transfer.direct import _SharedBearer

    class Answer(HttpResponse):
        def __init__(self, request: HttpRequest, status: int, headers: dict[str, str]):
            super().__init__(request, None)
            self.status_code, self.headers = status, headers

        def close(self) -> None:
            pass

    class Service(HttpTransport):  # type: ignore[type-arg]
        def __init__(self) -> None:
            self.seen: list[str] = []

        def send(self, request: HttpRequest, **kwargs: Any) -> Answer:
            self.seen.append(request.headers["Authorization"])
            if len(self.seen) == 1:
                return Answer(request, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return Answer(request, 200, {})

        def open(self) -> None: ...
        def close(self) -> None: ...
        def __exit__(self, *args: object) -> None: ...

    tokens = iter(["first", "second"])

    class Policy(BearerTokenCredentialPolicy):  # type: ignore[type-arg]
        def on_challenge(self, request: Any, response: Any) -> bool:
            self.authorize_request(request, *self._scopes)
            return True

    class Credential:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken(next(tokens), 2**31)

    shared = Policy(Credential(), "https://storage.azure.com/.default")
    sdk_next = object()
    shared.next = sdk_next  # type: ignore[assignment]  # as linked in the SDK's pipeline
    service = Service()
    pipeline = Pipeline(service, policies=[_SharedBearer(shared)])
    answer = pipeline.run(HttpRequest("GET", "https://acc.blob.core.windows.net/c/b"))
    assert answer.http_response.status_code == 200
    assert service.seen == ["Bearer first", "Bearer second"]
    assert shared.next is sdk_next
