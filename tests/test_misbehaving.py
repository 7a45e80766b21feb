"""A service that misbehaves, met by the direct reads and listings as the Azure SDK meets it.

Azurite plays the service behind :class:`fault_proxy.FaultProxy`, whose rules
answer in its place (a 200 that is not a listing, throttling with
Retry-After, server errors), reset connections, cut bodies or drip them.
Every request the connectors make is seen by the proxy: counted, timed, and
checked for a request id and the SDK's user agent. The connectors run first
in this process (their objects, as their servicers call them), then as
plakar runs them: the importer spawned and driven over its stdio, and the
real plakar backing up through the proxy.
"""

from __future__ import annotations

import base64
import os
import queue
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from azblob_helpers import new_container, pk
from azblob_package import entry_point
from azure.storage.blob import ContainerClient
from azurite import ACCOUNT, KEY, Azurite
from entra_azurite import TokenService, ca_directory, https_azurite, self_signed
from fault_proxy import FaultProxy, Rule, Seen
from kloset_grpc import importer_pb2_grpc as ipb_grpc
from plakar_env import PlakarEnv, output, snapshot_id
from stdio_plugin import StdioPlugin

from kloset_sdk import (
    ConnectorError,
    IncomingContent,
    Options,
    Range,
    Record,
    Resource,
    StoreFlag,
    each_record,
    filemode,
    iter_chunks,
)
from kloset_sdk._proto import connectors_pb2 as cpb
from kloset_sdk._proto import importer_pb2 as ipb
from plakar_azblob.clients import retry
from plakar_azblob.clients.factory import USER_AGENT
from plakar_azblob.destination import AzureExporter
from plakar_azblob.source import AzureImporter
from plakar_azblob.storage import AzureStore
from plakar_azblob.transfer import direct as direct_module
from plakar_azblob.transfer import http_transport
from plakar_azblob.transfer.direct import FALLBACKS

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
    openers = {r.pathname: r.opener for r in each_record(source.scan())
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
            list(each_record(source.scan()))
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


def test_throttled_store_gets_wait_and_ask_once_more(azurite: Azurite) -> None:
    """The storage connector's Gets alike: a whole object (one stream) and a range of
    less than a block (one GET), each asked once more, a second later."""
    kstore = new_container(azurite, "thr-store")
    config = {"location": f"azblob://{kstore.container_name}", "account_name": ACCOUNT,
              "account_key": KEY, "block_size": "1MiB"}
    writer = AzureStore("azblob", {**config, "endpoint": azurite.endpoint})
    writer.create(b"config")
    mac = b"\x02" * 32
    writer.put(Resource.PACKFILE, mac, IncomingContent(source=iter([BIG_DATA])), StoreFlag.NONE)
    writer.close()
    reads = {"whole": (None, BIG_DATA), "part": (Range(MiB, 1000), BIG_DATA[MiB:MiB + 1000])}
    for what, (range_, data) in reads.items():
        with proxy(azurite, Rule("answer", kind="blob", status=503, retry_after="1")) as px:
            store = AzureStore("azblob", {**config, "endpoint": px.endpoint(ACCOUNT)})
            got = store.get(Resource.PACKFILE, mac, range_, StoreFlag.NONE)
            assert b"".join(iter_chunks(got)) == data
            store.close()
        [name] = {s.path.rsplit("/", 1)[-1] for s in px.seen}
        first, second = px.requests_to(name)
        assert (first.action, second.action) == ("answer", ""), what
        assert second.at - first.at >= 1.0, what
        # The whole object is one stream, not ranges; the part, one ranged GET.
        assert ("x-ms-range" in second.headers) == (what == "part"), what


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
    monkeypatch.setattr(retry, "INITIAL_BACKOFF", 0.005)
    monkeypatch.setattr(retry, "MAX_BACKOFF", 0.02)


def test_lasting_server_errors_end_in_one_line_after_the_retries(
        azurite: Azurite, dataset: ContainerClient, quick_retries: None) -> None:
    name = next(iter(SMALL))
    rules = [Rule("answer", blob=name, status=500, times=None)]
    with proxy(azurite, *rules) as px:
        source = importer(px.endpoint(ACCOUNT), dataset.container_name)
        [record] = [r for r in each_record(source.scan()) if r.pathname == f"/{name}" and r.opener]
        assert record.opener is not None
        with pytest.raises(ConnectorError) as info:
            list(iter_chunks(record.opener()))
    assert fault_of(info.value) == (f"cannot read blob {name!r}: the storage service had an "
                                    "internal error (InternalError, HTTP 500)")
    assert len(px.requests_to(name)) == 1 + retry.STATUS_RETRIES
    with proxy(azurite, Rule("answer", kind="list", status=503, times=None)) as px, \
            pytest.raises(ConnectorError) as info:
        list(importer(px.endpoint(ACCOUNT), dataset.container_name).scan())
    assert fault_of(info.value) == (f"cannot list azblob://{dataset.container_name}: the "
                                    "storage service is busy (ServerBusy, HTTP 503)")
    assert len(px.listings()) == 1 + retry.STATUS_RETRIES


# -- 4. bodies that drip: bounded in time --

@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body must come within 1 s plus 1 s per MiB (the real ones: 120 s, 16 KiB/s)."""
    monkeypatch.setattr(direct_module, "READ_TIMEOUT", 1.0)
    monkeypatch.setattr(direct_module, "MIN_BODY_RATE", MiB)
    monkeypatch.setattr(http_transport, "TICK", 0.1)


def test_a_dripping_or_stalled_body_is_cut_then_asked_again(
        azurite: Azurite, dataset: ContainerClient, short_deadlines: None) -> None:
    small, stalled = list(SMALL)[:2]
    rules = [Rule("drip", blob=small, drip=0.01), Rule("drip", blob=BIG, drip=0.01),
             Rule("drip", blob=stalled, drip=3.0)]  # a byte, then silence (a stall)
    started = time.monotonic()
    with proxy(azurite, *rules) as px:
        assert backup(importer(px.endpoint(ACCOUNT), dataset.container_name)) == expected()
    assert time.monotonic() - started < 30  # dripping, each would take hours
    for name in (small, BIG, stalled):
        assert [s.action for s in px.requests_to(name)] == ["drip", ""], name


def test_a_body_that_always_drips_ends_in_one_line(
        azurite: Azurite, dataset: ContainerClient, short_deadlines: None,
        quick_retries: None) -> None:
    small = next(iter(SMALL))
    rules = [Rule("drip", blob=small, drip=0.01, times=None),
             Rule("drip", blob=BIG, drip=0.01, times=None)]
    with proxy(azurite, *rules) as px:
        source = importer(px.endpoint(ACCOUNT), dataset.container_name)
        records = {r.pathname: r for r in each_record(source.scan()) if r.opener and not r.is_xattr}
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
    assert len(px.requests_to(small)) == 1 + retry.READ_RETRIES
    # The big blob's tries are new requests (a new id each, resumed where the body
    # stopped). Counted by id: under load the emulator's head can come later than
    # the 1 s read timeout, and the pipeline then sends the same request again (same
    # id) within its own bound; that is a retry of one try, not one more try.
    tries = {s.headers["x-ms-client-request-id"] for s in px.requests_to(BIG)}
    assert len(tries) == 1 + retry.READ_RETRIES
    assert len(px.requests_to(BIG)) <= (1 + retry.READ_RETRIES) ** 2


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
        # The destination's requests (the SDK's alone) too.
        exporter = AzureExporter("azblob", {"location": f"azblob://{kstore.container_name}/r",
                                            "account_name": ACCOUNT, "account_key": KEY,
                                            "endpoint": px.endpoint(ACCOUNT)}, Options())
        exporter.export(Record.file("/f.bin", size=len(BIG_DATA), mod_time=datetime.now(UTC),
                                    opener=None), IncomingContent(source=iter([BIG_DATA])))
        exporter.close()
    assert kstore.download_blob("r/f.bin").readall() == BIG_DATA
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
        monkeypatch.setenv("HTTP_PROXY", f"http://proxy%20user:p%40ss@127.0.0.1:{px.port}")
        before = sum(FALLBACKS.values())
        source = importer(azurite.endpoint, dataset.container_name)
        source.ping()  # through the SDK
        assert backup(source) == expected()
        assert sum(FALLBACKS.values()) == before
        assert px.forwarded == len(px.seen) and len(px.requests_to(BIG)) == 1
        assert len(px.seen) == 1 + 1 + len(SMALL) + 1  # ping, listing, the blobs
        # The proxy's credentials, as requests sends them.
        assert {s.headers.get("proxy-authorization") for s in px.seen} == {
            "Basic " + base64.b64encode(b"proxy user:p@ss").decode()}
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
        list(each_record(importer(server.endpoint, container.container_name).scan()))
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


# -- 7. the importer spawned and driven over its stdio, as plakar does --

class Stdio:
    """The importer as plakar runs it: Init, Import (records unacknowledged until the
    end, as plakar does for a record it has yet to open), then Opens."""

    def __init__(self, endpoint: str, container: str, code: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        argv = [str(entry_point()), "importer"] if code is None else \
            [sys.executable, "-c", code + "\nfrom kloset_sdk import serve\n"
                                          "from plakar_azblob.source import AzureImporter\n"
                                          "serve('importer', AzureImporter)\n"]
        self.plugin = StdioPlugin(argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                         "HOME": os.environ.get("HOME", "/"), **(env or {})})
        self.stub = ipb_grpc.ImporterStub(self.plugin.channel)
        self.stub.Init(ipb.InitRequest(
            proto="azblob", options=ipb.Options(maxconcurrency=4),
            config={"location": f"azblob://{container}", "account_name": ACCOUNT,
                    "account_key": KEY, "endpoint": endpoint, "block_size": "1MiB"}),
            timeout=60, wait_for_ready=True)
        self.acks: queue.Queue[ipb.ImportRequest | None] = queue.Queue()

    def records(self) -> list[str]:
        """The pathnames of the files imported (not directories, not extended attributes)."""
        call = self.stub.Import(iter(self.acks.get, None), timeout=120)
        found = []
        for response in call:
            if response.finished:
                break
            record = response.record
            if not record.isXattr and not record.fileInfo.mode & filemode.DIR:
                found.append(record.pathname)
        return found

    def open(self, path: str) -> bytes:
        request = ipb.OpenRequest(record=cpb.Record(pathname=path))
        return b"".join(r.chunk for r in self.stub.Open(request, timeout=120))

    def close(self) -> str:
        """End the plugin; its stderr."""
        self.acks.put(None)
        self.plugin.close_stdin()
        return self.plugin.stderr


@contextmanager
def stdio(endpoint: str, container: str, code: str | None = None,
          env: dict[str, str] | None = None) -> Iterator[Stdio]:
    plugin = Stdio(endpoint, container, code, env)
    try:
        yield plugin
    finally:
        plugin.close()


def test_over_stdio_a_page_that_is_not_a_listing_fails_the_import(
        azurite: Azurite, dataset: ContainerClient) -> None:
    rule = Rule("answer", kind="list", times=None, status=200, body=HTML,
                content_type="text/html; charset=utf-8")
    with proxy(azurite, rule) as px, stdio(px.endpoint(ACCOUNT), dataset.container_name) as imp, \
            pytest.raises(grpc.RpcError) as info:
        imp.records()
    details = str(info.value.details())
    assert details.startswith(f"cannot list azblob://{dataset.container_name}: the service's "
                              "answer is not a blob listing: HTTP 200, Content-Type text/html; "
                              "charset=utf-8, XML whose root is <html>"), details
    assert "\n" not in details


def test_over_stdio_throttled_reads_wait_and_ask_once_more(
        azurite: Azurite, dataset: ContainerClient) -> None:
    rules = [Rule("answer", kind="blob", status=503, retry_after="1"),
             Rule("answer", kind="list", status=429, retry_after="1")]
    with proxy(azurite, *rules) as px, stdio(px.endpoint(ACCOUNT), dataset.container_name) as imp:
        paths = imp.records()
        with ThreadPoolExecutor(8) as pool:
            contents = dict(zip(paths, pool.map(imp.open, paths), strict=True))
    assert contents == expected()
    for name in [*SMALL, BIG]:
        first, second = px.requests_to(name)
        assert second.at - first.at >= 1.0 and "x-ms-range" not in second.headers
    assert len(px.listings()) == 2
    assert_identified([s for s in px.seen if s.action == ""])


# Deadlines short enough for a test (the real ones: 120 s, then 16 KiB/s), and the
# retries quick, in the spawned importer.
SHORT = """
from plakar_azblob.clients import retry
from plakar_azblob.transfer import direct, http_transport
direct.READ_TIMEOUT, direct.MIN_BODY_RATE, http_transport.TICK = 1.0, 1 << 20, 0.1
retry.INITIAL_BACKOFF, retry.MAX_BACKOFF = 0.005, 0.02
"""


def test_over_stdio_dripping_bodies_end_in_bounded_time(
        azurite: Azurite, dataset: ContainerClient) -> None:
    small, dripping = list(SMALL)[:2]
    rules = [Rule("drip", blob=small, drip=0.01), Rule("drip", blob=BIG, drip=0.01),
             Rule("drip", blob=dripping, drip=0.01, times=None)]
    started = time.monotonic()
    with proxy(azurite, *rules) as px, \
            stdio(px.endpoint(ACCOUNT), dataset.container_name, SHORT) as imp:
        imp.records()
        assert imp.open(f"/{small}") == SMALL[small]
        assert imp.open(f"/{BIG}") == BIG_DATA
        with pytest.raises(grpc.RpcError) as info:
            imp.open(f"/{dripping}")
    assert time.monotonic() - started < 60
    assert str(info.value.details()) == (
        f"cannot read blob {dripping!r}: the connection to {px.endpoint(ACCOUNT)} failed: "
        "the answer was too slow (a stalled or dripping body)")
    assert len(px.requests_to(small)) == len(px.requests_to(BIG)) == 2
    # Its tries, and the same again if the read-ahead (after the Open of the blob before
    # it) gave up first: a read ahead that failed is made again at the Open.
    tries = 1 + retry.READ_RETRIES
    assert len(px.requests_to(dripping)) in (tries, 2 * tries)


def test_over_stdio_fallbacks_are_logged_at_debug_level(
        azurite: Azurite, dataset: ContainerClient) -> None:
    """An SDK whose client lacks what the direct path uses: the SDK's objects read
    everything, and KLOSET_LOG=debug says so for each request."""
    code = "import plakar_azblob.transfer.direct as d\nd._credential = lambda policy: None\n"
    with proxy(azurite) as px, stdio(px.endpoint(ACCOUNT), dataset.container_name, code,
                                     {"KLOSET_LOG": "debug"}) as imp:
        assert f"/{BIG}" in imp.records()
        assert imp.open(f"/{BIG}") == BIG_DATA
        stderr = imp.close()
    assert "no direct path: the Azure SDK client's credential policy is " \
        "SharedKeyCredentialPolicy" in stderr
    assert "request made through the Azure SDK instead of the direct path: listing" in stderr
    assert "request made through the Azure SDK instead of the direct path: read" in stderr


# -- 8. the real plakar --

@pytest.mark.plakar
def test_plakar_backup_through_a_gateway_answering_html_fails_in_one_line(
        azplakar: PlakarEnv, azurite: Azurite, dataset: ContainerClient, tmp_path: Path) -> None:
    """A captive portal or a misconfigured gateway: a backup of nothing must not succeed."""
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    rule = Rule("answer", kind="list", times=None, status=200, body=HTML,
                content_type="text/html")
    with proxy(azurite, rule) as px:
        pk(azplakar, "source", "add", "src", f"azblob://{dataset.container_name}",
           f"account_name={ACCOUNT}", f"account_key={KEY}", f"endpoint={px.endpoint(ACCOUNT)}")
        proc = pk(azplakar, "at", store, "backup", "@src", ok=False)
    text = output(proc)
    assert proc.returncode != 0, text
    assert "Traceback" not in text
    assert text.strip().endswith(f"failed to backup source: rpc error: code = Unknown desc = "
                                 f"cannot list azblob://{dataset.container_name}: the service's "
                                 "answer is not a blob listing: HTTP 200, Content-Type "
                                 "text/html, XML whose root is <html>"), text
    assert len(text.strip().splitlines()) == 1, text
    assert pk(azplakar, "at", store, "ls").stdout.strip() == ""  # no snapshot


@pytest.mark.plakar
def test_plakar_backup_under_throttling_equals_a_clean_one(
        azplakar: PlakarEnv, azurite: Azurite, dataset: ContainerClient, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    rules = [Rule("answer", kind="blob", status=503, retry_after="1"),
             Rule("answer", kind="list", status=503, retry_after="1")]
    with proxy(azurite, *rules) as px:
        pk(azplakar, "source", "add", "src", f"azblob://{dataset.container_name}",
           f"account_name={ACCOUNT}", f"account_key={KEY}", f"endpoint={px.endpoint(ACCOUNT)}")
        snap = snapshot_id(pk(azplakar, "at", store, "backup", "@src"))
    for name in [*SMALL, BIG]:
        first, second = px.requests_to(name)
        assert second.at - first.at >= 1.0 and "x-ms-range" not in second.headers
    assert_identified([s for s in px.seen if s.action == ""])
    restored = tmp_path / "restored"
    pk(azplakar, "at", store, "restore", "-to", str(restored), snap)
    assert {f"/{p.relative_to(restored)}": p.read_bytes() for p in restored.rglob("*")
            if p.is_file()} == expected()
