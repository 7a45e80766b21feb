"""A service that misbehaves, met by the direct reads and listings as the Azure SDK meets it.

Azurite plays the service behind :class:`fault_proxy.FaultProxy`, whose rules
answer in its place (a 200 that is not a listing, throttling with
Retry-After, server errors), reset connections, cut bodies or drip them. The
connectors run in this process here (their objects, as their servicers call
them); ``test_misbehaving_stdio.py`` drives them as plakar does. Every
request the connectors make is seen by the proxy: counted, timed, and
checked for a request id and the SDK's user agent.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from azblob_helpers import new_container
from azure.storage.blob import ContainerClient
from azurite import ACCOUNT, KEY, Azurite
from entra_azurite import TokenService, ca_directory, https_azurite, self_signed
from fault_proxy import FaultProxy, Rule, Seen

from kloset_sdk import (
    ConnectorError,
    IncomingContent,
    Options,
    Range,
    Resource,
    StoreFlag,
    iter_chunks,
)
from plakar_azblob import client as client_module
from plakar_azblob import direct as direct_module
from plakar_azblob import http_transport
from plakar_azblob.client import USER_AGENT
from plakar_azblob.direct import FALLBACKS
from plakar_azblob.source import AzureImporter
from plakar_azblob.storage import AzureStore

pytestmark = [pytest.mark.azurite, pytest.mark.faults]
MiB = 1024 * 1024
SMALL = {f"small/{i}.bin": os.urandom(1000 + 97 * i) for i in range(6)}
BIG = "big.bin"
BIG_DATA = os.urandom(3 * MiB + 11)  # more than a block (1 MiB here): one streamed GET
HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Wi-Fi</body></html>"


@pytest.fixture(scope="module")
def dataset(azurite: Azurite) -> ContainerClient:
    container = new_container(azurite, "misbehave")
    for name, data in SMALL.items():
        container.upload_blob(name, data)
    container.upload_blob(BIG, BIG_DATA)
    return container


@contextmanager
def proxy(azurite: Azurite, *rules: Rule) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.port, rules=rules) as px:
        yield px


def importer(endpoint: str, container: str, **extra: str) -> AzureImporter:
    return AzureImporter("azblob", {"location": f"azblob://{container}",
                                    "account_name": ACCOUNT, "account_key": KEY,
                                    "endpoint": endpoint, "block_size": "1MiB", **extra},
                         Options())


def backup(source: AzureImporter) -> dict[str, bytes]:
    """Every file's content, read 8 at a time (as the read-ahead does)."""
    openers = {r.pathname: r.opener for r in source.scan()
               if r.opener is not None and not r.is_xattr}

    def read(opener: Any) -> bytes:
        return b"".join(iter_chunks(opener()))

    with ThreadPoolExecutor(8) as pool:
        contents = dict(zip(openers, pool.map(read, openers.values()), strict=True))
    source.close()
    return contents


def expected() -> dict[str, bytes]:
    return {f"/{name}": data for name, data in {**SMALL, BIG: BIG_DATA}.items()}


def fault_of(exc: BaseException) -> str:
    assert isinstance(exc, ConnectorError), exc
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


# -- 1. a 200 that is not a listing --

TRUNCATED = (b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint='
             b'"http://127.0.0.1/devstoreaccount1" ContainerName="c"><Blobs><Blob><Name>a</Na')


@pytest.mark.parametrize(("body", "content_type", "why"), [
    (HTML, "text/html", "XML whose root is <html>"),
    (b"\x00\x9f\x17 garbage \xff", "application/octet-stream", "malformed or truncated XML"),
    (TRUNCATED, "application/xml", "malformed or truncated XML"),
    (b"", "text/plain", "an empty body"),
], ids=["html", "garbage", "truncated", "empty"])
def test_a_page_that_is_not_a_listing_fails_the_import(
        azurite: Azurite, dataset: ContainerClient, body: bytes, content_type: str,
        why: str) -> None:
    rule = Rule("answer", kind="list", times=None, status=200, body=body,
                content_type=content_type)
    with proxy(azurite, rule) as px:
        source = importer(px.endpoint(ACCOUNT), dataset.container_name)
        with pytest.raises(ConnectorError) as info:
            list(source.scan())
        # The store's listings too.
        store = AzureStore("azblob", {"location": f"azblob://{dataset.container_name}",
                                      "account_name": ACCOUNT, "account_key": KEY,
                                      "endpoint": px.endpoint(ACCOUNT)})
        with pytest.raises(ConnectorError) as store_info:
            list(store.list(Resource.PACKFILE, StoreFlag.NONE))
        # The SDK refuses those bytes too.
        sdk = ContainerClient(px.endpoint(ACCOUNT), dataset.container_name,
                              credential={"account_name": ACCOUNT, "account_key": KEY})
        with pytest.raises(Exception):  # noqa: B017 - whatever the SDK raises
            list(sdk.list_blobs())
    message = fault_of(info.value)
    assert message.startswith(f"cannot list azblob://{dataset.container_name}: the service's "
                              f"answer is not a blob listing: HTTP 200, Content-Type "
                              f"{content_type}, {why}"), message
    assert "is not a blob listing: HTTP 200" in fault_of(store_info.value)
    assert len(px.listings()) == 1 + 1 + 1  # never asked again


# -- 2. throttling: one more request per blob, no sooner than Retry-After --

@pytest.mark.parametrize("status", [503, 429])
def test_throttled_reads_wait_and_ask_once_more(azurite: Azurite, dataset: ContainerClient,
                                                status: int) -> None:
    """The first GET of each blob (and the listing) answered ``status`` with
    ``Retry-After: 1``: exactly one more request each, a second later at the earliest,
    and the large blob still one streamed request (no ranges)."""
    rules = [Rule("answer", kind="blob", status=status, retry_after="1"),
             Rule("answer", kind="list", status=status, retry_after="1")]
    with proxy(azurite, *rules) as px:
        assert backup(importer(px.endpoint(ACCOUNT), dataset.container_name)) == expected()
    for name in [*SMALL, BIG]:
        first, second = px.requests_to(name)  # exactly two
        assert first.action == "answer" and second.action == ""
        assert second.at - first.at >= 1.0, (name, second.at - first.at)
        assert "x-ms-range" not in second.headers
        # The same request id for both tries: they are one request, retried.
        assert first.headers["x-ms-client-request-id"] == \
            second.headers["x-ms-client-request-id"]
    first, second = px.listings()
    assert second.at - first.at >= 1.0


# -- 3. server errors, resets, cut bodies --

def test_server_errors_resets_and_cut_bodies_are_asked_again(
        azurite: Azurite, dataset: ContainerClient) -> None:
    names = list(SMALL)
    rules = [Rule("answer", blob=names[0], status=500),
             Rule("reset", blob=names[1]),
             Rule("cut", blob=names[2], cut_after=500),
             Rule("cut", blob=BIG, cut_after=MiB + 5),
             Rule("reset", kind="list")]
    with proxy(azurite, *rules) as px:
        assert backup(importer(px.endpoint(ACCOUNT), dataset.container_name)) == expected()
    for name in names[:3]:
        assert [s.action for s in px.requests_to(name)] == [
            next(r.action for r in rules if r.blob == name), ""]
    for name in names[3:]:
        assert len(px.requests_to(name)) == 1
    # The stream is resumed where it broke, from the same version.
    cut, resumed = px.requests_to(BIG)
    assert "x-ms-range" not in cut.headers
    start = int(resumed.headers["x-ms-range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= MiB + 5 and resumed.headers["if-match"]
    assert len(px.listings()) == 2


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries a hundred times sooner (the count of tries is what is tested)."""
    monkeypatch.setattr(client_module, "INITIAL_BACKOFF", 0.005)
    monkeypatch.setattr(client_module, "MAX_BACKOFF", 0.02)


def test_lasting_server_errors_end_in_one_line_after_the_retries(
        azurite: Azurite, dataset: ContainerClient, quick_retries: None) -> None:
    name = next(iter(SMALL))
    rules = [Rule("answer", blob=name, status=500, times=None)]
    with proxy(azurite, *rules) as px:
        source = importer(px.endpoint(ACCOUNT), dataset.container_name)
        [record] = [r for r in source.scan() if r.pathname == f"/{name}" and r.opener]
        assert record.opener is not None
        with pytest.raises(ConnectorError) as info:
            list(iter_chunks(record.opener()))
    assert fault_of(info.value) == (f"cannot read blob {name!r}: the storage service had an "
                                    "internal error (InternalError, HTTP 500)")
    assert len(px.requests_to(name)) == 1 + client_module.STATUS_RETRIES
    with proxy(azurite, Rule("answer", kind="list", status=503, times=None)) as px, \
            pytest.raises(ConnectorError) as info:
        list(importer(px.endpoint(ACCOUNT), dataset.container_name).scan())
    assert fault_of(info.value) == (f"cannot list azblob://{dataset.container_name}: the "
                                    "storage service is busy (ServerBusy, HTTP 503)")
    assert len(px.listings()) == 1 + client_module.STATUS_RETRIES


# -- 4. bodies that drip: bounded in time --

@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body must come within 1 s plus 1 s per MiB (the real ones: 120 s, 16 KiB/s)."""
    monkeypatch.setattr(direct_module, "READ_TIMEOUT", 1.0)
    monkeypatch.setattr(direct_module, "MIN_BODY_RATE", MiB)
    monkeypatch.setattr(http_transport, "TICK", 0.1)


def test_a_dripping_body_is_cut_then_asked_again(
        azurite: Azurite, dataset: ContainerClient, short_deadlines: None) -> None:
    small = next(iter(SMALL))
    rules = [Rule("drip", blob=small, drip=0.01), Rule("drip", blob=BIG, drip=0.01)]
    started = time.monotonic()
    with proxy(azurite, *rules) as px:
        assert backup(importer(px.endpoint(ACCOUNT), dataset.container_name)) == expected()
    assert time.monotonic() - started < 30  # dripping, each would take hours
    assert [s.action for s in px.requests_to(small)] == ["drip", ""]
    assert [s.action for s in px.requests_to(BIG)] == ["drip", ""]


def test_a_body_that_always_drips_ends_in_one_line(
        azurite: Azurite, dataset: ContainerClient, short_deadlines: None,
        quick_retries: None) -> None:
    small = next(iter(SMALL))
    rules = [Rule("drip", blob=small, drip=0.01, times=None),
             Rule("drip", blob=BIG, drip=0.01, times=None)]
    with proxy(azurite, *rules) as px:
        source = importer(px.endpoint(ACCOUNT), dataset.container_name)
        records = {r.pathname: r for r in source.scan() if r.opener and not r.is_xattr}
        messages = {}
        for name in (small, BIG):
            opener = records[f"/{name}"].opener
            assert opener is not None
            with pytest.raises(ConnectorError) as info:
                list(iter_chunks(opener()))
            messages[name] = fault_of(info.value)
    assert messages[small] == (f"cannot read blob {small!r}: the connection to "
                               f"{px.endpoint(ACCOUNT)} failed: the answer was too slow "
                               "(a stalled or dripping body)")
    assert messages[BIG] == (f"cannot read blob {BIG!r}: the download was too slow (stalled, "
                             "or a body dripping in), and again on each retry")
    assert len(px.requests_to(small)) == 1 + client_module.READ_RETRIES
    assert len(px.requests_to(BIG)) == 1 + client_module.READ_RETRIES


# -- 5. every request, direct or not: a request id and the SDK's user agent --

def assert_identified(seen: list[Seen]) -> None:
    agents = {s.headers.get("user-agent") for s in seen}
    assert len(agents) == 1, agents
    [agent] = agents
    assert agent is not None and agent.startswith(f"{USER_AGENT} azsdk-python-storage-blob/")
    ids = [s.headers.get("x-ms-client-request-id") for s in seen]
    assert all(ids) and len(set(ids)) == len(ids)
    for request_id in ids:
        uuid.UUID(str(request_id))


def test_every_request_has_a_request_id_and_the_sdk_user_agent(
        azurite: Azurite, dataset: ContainerClient) -> None:
    kstore = new_container(azurite, "ids")
    with proxy(azurite) as px:
        assert backup(importer(px.endpoint(ACCOUNT), dataset.container_name)) == expected()
        store = AzureStore("azblob", {"location": f"azblob://{kstore.container_name}/k",
                                      "account_name": ACCOUNT, "account_key": KEY,
                                      "endpoint": px.endpoint(ACCOUNT), "block_size": "1MiB"})
        store.create(b"config")
        store.put(Resource.PACKFILE, b"\x01" * 32, IncomingContent(source=iter([BIG_DATA])),
                  StoreFlag.NONE)
        assert store.open() == b"config"
        assert list(store.list(Resource.PACKFILE, StoreFlag.NONE)) == [b"\x01" * 32]
        got = store.get(Resource.PACKFILE, b"\x01" * 32, Range(5, 100), StoreFlag.NONE)
        assert b"".join(iter_chunks(got)) == BIG_DATA[5:105]
        store.delete(Resource.PACKFILE, b"\x01" * 32, StoreFlag.NONE)
        store.close()
    kinds = {s.method for s in px.seen}
    assert {"GET", "PUT", "DELETE"} <= kinds and px.listings()
    assert_identified(px.seen)


# -- 6. proxies and CA bundles, as the SDK's clients take them --

def test_an_http_proxy_from_the_environment(azurite: Azurite, dataset: ContainerClient,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY: every request goes through it, the direct ones too."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with proxy(azurite) as px:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{px.port}")
        before = sum(FALLBACKS.values())
        source = importer(azurite.endpoint, dataset.container_name)
        source.ping()  # through the SDK
        assert backup(source) == expected()
        assert sum(FALLBACKS.values()) == before
        assert px.forwarded == len(px.seen) and len(px.requests_to(BIG)) == 1
        assert len(px.seen) == 1 + 1 + len(SMALL) + 1  # ping, listing, the blobs
        # NO_PROXY is honoured as well.
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert backup(importer(azurite.endpoint, dataset.container_name)) == expected()
        assert px.forwarded == 1 + 1 + len(SMALL) + 1


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    """Azurite over https with bearer tokens, and the certificate to trust it with."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(folder)
    server = https_azurite(cert, key)
    try:
        yield server, cert
    finally:
        server.stop()


def https_container(server: Azurite, cert: Path) -> ContainerClient:
    container = ContainerClient(server.endpoint, f"tls-{uuid.uuid4().hex[:10]}",
                                credential={"account_name": ACCOUNT, "account_key": KEY},
                                connection_verify=str(cert))
    container.create_container()
    for name, data in SMALL.items():
        container.upload_blob(name, data)
    container.upload_blob(BIG, BIG_DATA)
    return container


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_directory_is_taken_as_requests_takes_it(
        tls: tuple[Azurite, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        variable: str) -> None:
    server, cert = tls
    directory = ca_directory(cert, tmp_path / "certs")
    if directory is None:
        pytest.skip("no openssl command to hash the CA certificate with")
    container = https_container(server, cert)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(directory))
    before = sum(FALLBACKS.values())
    source = importer(server.endpoint, container.container_name)
    source.ping()  # the SDK's client, through requests
    assert backup(source) == expected()
    assert sum(FALLBACKS.values()) == before
    # A directory without the CA: refused, in one line, whichever path asks.
    monkeypatch.setenv(variable, str(tmp_path))
    with pytest.raises(ConnectorError) as info:
        list(importer(server.endpoint, container.container_name).scan())
    assert fault_of(info.value) == (f"cannot list azblob://{container.container_name}: "
                                    f"cannot reach {server.endpoint}: TLS certificate "
                                    "verification failed")


def test_entra_id_bearer_tokens_on_the_direct_path(
        tls: tuple[Azurite, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Microsoft Entra ID (a managed identity): the reads and listings are direct, and
    share the SDK client's token: one token for the whole backup."""
    server, cert = tls
    container = https_container(server, cert)
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with TokenService() as tokens:
        for name, value in tokens.env.items():
            monkeypatch.setenv(name, value)
        before = sum(FALLBACKS.values())
        source = AzureImporter("azblob", {"location": f"azblob://{container.container_name}",
                                          "account_name": ACCOUNT, "endpoint": server.endpoint,
                                          "block_size": "1MiB"}, Options())
        assert source._cfg.auth_method == "entra_id"
        source.ping()  # through the SDK
        assert backup(source) == expected()
        assert sum(FALLBACKS.values()) == before
        assert tokens.served == 1
