"""Listing pages checked for well-formed XML in a helper process (transfer/xmlcheck).

The helper gives the verdict the importer would give itself, on every kind of
page; a listing read through it is the same listing; and where the helper
cannot serve (not started in a confined launch, killed, stopped, answering
garbage) the pages are checked in the importer, with the same outcome, and no
helper process is left behind. A page the regular reading would misread is
refused when the helper finds it malformed, whoever checks it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest
from azblob_helpers import new_container, pk, sas
from azure.storage.blob import ContainerClient
from azurite import ACCOUNT, KEY, Azurite
from fault_proxy import FaultProxy, Rule, pages_of
from fork_helpers import alive, children_of
from listing_service import ListingService, service_for_tests
from plakar_env import PlakarEnv, output, snapshot_id

import plakar_azblob.__main__ as azblob_main
from kloset_sdk import Options, each_record
from plakar_azblob.clients.errors import UnexpectedAnswer
from plakar_azblob.source import AzureImporter
from plakar_azblob.transfer import listing, wellformed, xmlcheck
from plakar_azblob.transfer.direct import Page
from plakar_azblob.transfer.xmlcheck import IRREGULAR, MALFORMED, REGULAR, PageChecker

ROOT = Path(__file__).resolve().parent.parent
HEAD = b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>'


def page(*blobs: str, marker: str = "", extra: str = "") -> bytes:
    """A List Blobs answer as Azure writes it, one blob per name."""
    entries = "".join(
        f"<Blob><Name>{name}</Name><Properties><Last-Modified>Fri, 01 Mar 2024 12:00:00 GMT"
        f"</Last-Modified><Etag>0x8DC00012345678{i:02X}</Etag><Content-Length>{i}"
        f"</Content-Length><Content-Type>text/plain</Content-Type><BlobType>BlockBlob"
        f"</BlobType></Properties><Metadata /></Blob>" for i, name in enumerate(blobs))
    return HEAD + (f'<EnumerationResults ServiceEndpoint="http://127.0.0.1/devstoreaccount1" '
                   f'ContainerName="c"><Blobs>{extra}{entries}</Blobs>'
                   f'<NextMarker>{marker}</NextMarker></EnumerationResults>').encode()


REGULAR_PAGE = page(*(f"d/f{i:04d}" for i in range(400)), marker="m1")
CASES = {
    "regular": (REGULAR_PAGE, REGULAR),
    "a comment": (page("a", extra="<!-- b -->"), IRREGULAR),
    "CDATA": (page("a").replace(b"<Name>a</Name>", b"<Name><![CDATA[a]]></Name>"), IRREGULAR),
    "a processing instruction": (page("a", extra="<?pi x?>"), IRREGULAR),
    "a DTD": (HEAD + b'<!DOCTYPE E [<!ENTITY x "y">]>' + page("a")[len(HEAD):], IRREGULAR),
    "truncated": (REGULAR_PAGE[:len(REGULAR_PAGE) // 2], MALFORMED),
    "an unescaped ampersand": (page("a&b", "c"), MALFORMED),
    "a second XML declaration": (page("a", extra='<?xml version="1.0"?>'), MALFORMED),
    "not UTF-8": (page("a").replace(b"<Name>a", b"<Name>\xff"), MALFORMED),
    "garbage": (b"\x00\x9f\x17 garbage \xff" * 100, MALFORMED),
    "empty": (b"", MALFORMED),
}


@pytest.fixture
def helped_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page handed to the helper, whatever its size."""
    monkeypatch.setattr(xmlcheck, "MIN_HELPED", 0)


def check_all(checker: PageChecker) -> dict[str, bytes]:
    return {name: checker.check(body) for name, (body, _) in CASES.items()}


EXPECTED = {name: verdict for name, (_, verdict) in CASES.items()}


# -- the verdicts --

def test_every_kind_of_page_gets_its_verdict_here() -> None:
    assert {name: wellformed.verdict(body) for name, (body, _) in CASES.items()} == EXPECTED


def test_the_helper_gives_the_same_verdicts_then_ends_with_its_listing(
        helped_always: None) -> None:
    with PageChecker() as checker:
        assert check_all(checker) == EXPECTED
        assert (checker.helped, checker.here) == (len(CASES), 0)
        process = checker._process
        assert process is not None
        assert process.args == [sys.executable, "-I", "-S", wellformed.__file__]
    assert process.returncode == 0  # its stdin ended: it exited by itself
    assert not alive(process.pid)


def test_small_pages_are_checked_here_without_a_helper() -> None:
    with PageChecker() as checker:
        assert checker.check(page("a")) == REGULAR
        assert (checker.helped, checker.here, checker._process) == (0, 1, None)


def test_the_frozen_builds_argument_serves_the_same_protocol(helped_always: None) -> None:
    assert azblob_main.XML_CHECK_ARG == wellformed.HELPER_ARG
    argv = [sys.executable, "-m", "plakar_azblob", azblob_main.XML_CHECK_ARG]
    env_path = os.environ.get("PYTHONPATH")
    with PageChecker(argv) as checker:
        os.environ["PYTHONPATH"] = str(ROOT / "src")
        try:
            assert check_all(checker) == EXPECTED
        finally:
            if env_path is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = env_path
        assert checker.helped == len(CASES)


def test_a_page_the_expressions_would_misread_is_refused_whoever_checks_it(
        helped_always: None) -> None:
    body = page("a&b", "c")  # an unescaped "&": not XML, yet regular to a regex
    with PageChecker() as checker:
        assert checker.submit(REGULAR_PAGE) is None  # the first: checked by its reader
        checked = checker.submit(body)
        assert checked is not None
        assert checked.result() == MALFORMED and checker.helped == 1
    assert listing._read_regular(body, None, checked.result()) is None
    for given in (checked, None):  # by the helper, or here
        with pytest.raises(UnexpectedAnswer) as info:
            listing.parse_page(Page(body, 200, "application/xml", given))
        assert "malformed or truncated XML" in str(info.value.message)


def test_a_verdict_given_is_the_check(helped_always: None) -> None:
    """The reading trusts the verdict it is given (the listing's own checker):
    a regular page said irregular is read through ElementTree, to the same blobs."""
    as_is = listing.parse_page(Page(REGULAR_PAGE, 200, "application/xml", done(REGULAR)))
    treed = listing.parse_page(Page(REGULAR_PAGE, 200, "application/xml", done(IRREGULAR)))
    assert as_is == treed == listing.read_tree(Page(REGULAR_PAGE, 200, "application/xml"))
    assert len(as_is.blobs) == 400 and as_is.marker == "m1"


def test_a_verdict_cancelled_with_its_listing_is_checked_by_the_reader() -> None:
    cancelled: Future[bytes] = Future()
    cancelled.cancel()
    body = page("a&b")
    with pytest.raises(UnexpectedAnswer):
        listing.parse_page(Page(body, 200, "application/xml", cancelled))
    assert listing.parse_page(Page(REGULAR_PAGE, 200, "application/xml", cancelled)) == \
        listing.read_tree(Page(REGULAR_PAGE, 200, "application/xml"))


def test_verdicts_to_come_are_given_in_their_own_thread(
        helped_always: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """submit() hands the check to the checker's thread (the fetching thread goes on).
    Left to the page's reader (None): the first page, while the helper starts, and
    a listing's only page (no helper then); a small page; any after close()."""
    with PageChecker() as checker:
        assert checker.submit(REGULAR_PAGE, more=False) is None
        assert checker._queue is None and checker._process is None
        assert checker.submit(REGULAR_PAGE) is None
        futures = {name: checker.submit(body) for name, (body, _) in CASES.items()}
        assert {name: f.result(timeout=30) for name, f in futures.items() if f} == EXPECTED
        assert checker.helped == len(CASES)
    monkeypatch.setattr(xmlcheck, "MIN_HELPED", 2)
    with PageChecker() as checker:
        assert checker.submit(b"x") is None and checker._queue is None
    assert checker.submit(REGULAR_PAGE) is None  # closed


def test_a_page_says_whether_more_follow() -> None:
    assert listing._continues(page("a", marker="2!28!MDAwMDA"))
    assert not listing._continues(page("a"))  # <NextMarker></NextMarker>
    assert not listing._continues(page("a").replace(b"<NextMarker></NextMarker>",
                                                    b"<NextMarker />"))
    assert not listing._continues(b"")


def done(verdict: bytes) -> Future[bytes]:
    future: Future[bytes] = Future()
    future.set_result(verdict)
    return future


# -- a helper that cannot serve: checked here, nothing left behind --

def test_a_helper_that_cannot_start_leaves_the_checks_here(helped_always: None) -> None:
    with PageChecker(["/nonexistent/python"]) as checker:
        assert check_all(checker) == EXPECTED
        assert (checker.helped, checker.here) == (0, len(CASES))


@pytest.mark.faults
@pytest.mark.parametrize("how", ["killed", "stopped", "garbage", "exits"])
def test_a_helper_that_fails_leaves_the_checks_here(
        helped_always: None, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setattr(xmlcheck, "DEADLINE", 0.5)
    argv = None
    if how == "garbage":  # reads a page, answers a byte that is no verdict
        argv = [sys.executable, "-c", "import os\nwhile os.read(0, 1 << 20): os.write(1, b'?')"]
    elif how == "exits":
        argv = [sys.executable, "-c", "import os; os.read(0, 8)"]
    started: list[subprocess.Popen[bytes]] = []
    real_start = PageChecker._start

    def start(self: PageChecker) -> subprocess.Popen[bytes]:
        started.append(real_start(self))
        return started[-1]

    monkeypatch.setattr(PageChecker, "_start", start)
    with PageChecker(argv) as checker:
        first = checker.check(REGULAR_PAGE)
        assert first == REGULAR
        [process] = started
        if how == "killed":
            os.kill(process.pid, signal.SIGKILL)
        elif how == "stopped":
            os.kill(process.pid, signal.SIGSTOP)
        since = time.monotonic()
        assert check_all(checker) == EXPECTED
        assert time.monotonic() - since < 10
        assert checker._process is None  # given up at once, and stopped
        assert checker.helped == (1 if how in ("killed", "stopped") else 0)
        assert len(started) == 1  # never started again
    assert process.returncode is not None and not alive(process.pid)


@pytest.mark.faults
@pytest.mark.skipif(os.getuid() != 0 or not (shutil.which("setpriv") and shutil.which("prlimit")),
                    reason="needs root, setpriv and prlimit")
def test_a_confined_importer_that_may_not_start_processes_checks_here() -> None:
    """Under another user limited to the processes it has (``prlimit --nproc``), the
    helper cannot be started: the pages are checked in the importer, correctly."""
    code = (f"import pickle, sys; sys.path[:0] = {sys.path!r}\n"
            "from plakar_azblob.transfer import xmlcheck\n"
            "xmlcheck.MIN_HELPED = 0\n"
            "with xmlcheck.PageChecker() as c:\n"
            "    got = b''.join(c.check(body) for body in pickle.load(sys.stdin.buffer))\n"
            "print(got.decode(), c.helped, c.here)\n")
    proc = subprocess.run(
        ["prlimit", "--nproc=1", "setpriv", "--reuid=65534", "--regid=65534",
         "--clear-groups", sys.executable, "-c", code],
        input=pickle.dumps([body for body, _ in CASES.values()]), capture_output=True,
        timeout=60)
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, stderr[-2000:]
    expected = b"".join(EXPECTED.values()).decode()
    assert stdout.split() == [expected, "0", str(len(CASES))], stderr[-2000:]


# -- whole listings --

@pytest.fixture(scope="module")
def service() -> Iterator[ListingService]:
    for svc in service_for_tests():
        svc.reset(delay_ms=0, prepare="hier-12000")
        yield svc


class Counted(PageChecker):
    made: ClassVar[list[Counted]] = []

    def __init__(self, argv: list[str] | None = None) -> None:
        super().__init__(argv)
        Counted.made.append(self)


def listed(service: ListingService, monkeypatch: pytest.MonkeyPatch,
           **config: str) -> list[tuple[str, bool, int]]:
    Counted.made = []
    monkeypatch.setattr(listing, "PageChecker", Counted)
    source = AzureImporter("azblob", {"location": "azblob://hier-12000",
                                      "connection_string": service.connection_string,
                                      **config}, Options())
    try:
        return [(r.pathname, r.is_xattr, r.file_info.size if r.file_info else -1)
                for r in each_record(source.scan())]
    finally:
        source.close()


def test_a_listing_through_the_helper_is_the_listing(
        service: ListingService, monkeypatch: pytest.MonkeyPatch) -> None:
    helped = listed(service, monkeypatch)
    [checker] = Counted.made
    assert checker.helped >= 3 and checker._process is None  # pages of 5000: ~3.5 MiB
    monkeypatch.setattr(xmlcheck, "MIN_HELPED", 1 << 40)
    here = listed(service, monkeypatch, list_concurrency="1")
    [checker] = Counted.made
    assert (checker.helped, checker.here) == (0, 0)  # each page checked by its reader
    assert helped == here
    assert sum(1 for name, xattr, _ in helped if not xattr and name.count("/") == 2) == 12000


@pytest.mark.faults
def test_a_listing_whose_helper_is_killed_midway_is_the_listing(
        service: ListingService, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = listed(service, monkeypatch)
    real_check = PageChecker.check

    def check_then_kill(self: PageChecker, body: bytes) -> bytes:
        answer = real_check(self, body)
        if self._process is not None:
            self._process.kill()  # the next page finds it dead
        return answer

    monkeypatch.setattr(PageChecker, "check", check_then_kill)
    assert listed(service, monkeypatch) == expected
    [checker] = Counted.made
    assert checker.helped == 1 and checker.here >= 1  # then the readers check


def test_an_abandoned_listing_stops_its_helper(service: ListingService) -> None:
    source = AzureImporter("azblob", {"location": "azblob://hier-12000",
                                      "connection_string": service.connection_string},
                           Options())
    children_before = set(_children())
    scan = source.scan()
    next(scan)  # a first page read: the helper runs
    assert set(_children()) - children_before
    scan.close()
    source.close()
    deadline = time.monotonic() + 5
    while set(_children()) - children_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(_children()) - children_before


def _children() -> list[int]:
    """This process's helpers, alive."""
    mine = set(children_of(os.getpid()))
    return [pid for pid in helpers() if pid in mine]


# -- through the real plakar --

@pytest.fixture(scope="module")
def big_page(azurite: Azurite) -> tuple[ContainerClient, dict[str, bytes]]:
    """A container of 1 200 blobs: a listing page of 500 is over MIN_HELPED."""
    container = new_container(azurite, "xmlcheck")
    content = {f"x/{i:04d}.txt": f"blob {i}".encode() for i in range(1200)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: container.upload_blob(*item), content.items()))
    url = f"{container.url}?restype=container&comp=list&include=metadata&maxresults=500"
    body = urllib.request.urlopen(url + "&" + sas(container, list=True)).read()
    assert len(body) > xmlcheck.MIN_HELPED and listing._continues(body)
    return container, content


class HelperWatch:
    """The helper processes (running wellformed.py) seen while it runs, polled."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.seen.update(helpers())

    def stop(self) -> set[int]:
        self._stop.set()
        self._thread.join()
        return self.seen


def helpers() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and alive(int(entry.name)) and \
                    wellformed.__file__ in (entry / "cmdline").read_text():
                found.append(int(entry.name))
    return found


@pytest.mark.plakar
@pytest.mark.azurite
def test_plakar_backs_up_a_container_whose_pages_the_helper_checks(
        azplakar: PlakarEnv, azurite: Azurite, big_page: tuple[ContainerClient, dict[str, bytes]],
        tmp_path: Path) -> None:
    """Pages of 500 blobs (a proxy sets maxresults), listed one after the other: the
    first checked by the importer plakar runs while its helper starts, the second by
    the helper; every blob backed up, and no helper left after."""
    container, content = big_page
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    token = sas(container, read=True, list=True)
    with FaultProxy(azurite.port, rewrite=pages_of(500)) as px:
        pk(azplakar, "source", "add", "big", f"azblob://{container.container_name}",
           f"connection_string=BlobEndpoint={px.endpoint(ACCOUNT)};"
           f"SharedAccessSignature={token}", "list_concurrency=1")
        watch = HelperWatch()
        try:
            snap = snapshot_id(pk(azplakar, "at", store, "backup", "@big"))
        finally:
            seen = watch.stop()
        assert len([s for s in px.seen if s.is_listing]) >= 2 * 3  # two importers
    assert seen, "no helper process ran during the backup"
    assert not [pid for pid in seen if alive(pid)]
    out = tmp_path / "restored"
    pk(azplakar, "at", store, "restore", "-to", str(out), snap)
    assert {str(f.relative_to(out)): f.read_bytes() for f in out.rglob("*") if f.is_file()} \
        == content


@pytest.mark.plakar
@pytest.mark.azurite
def test_plakar_backup_of_a_big_page_that_is_not_xml_fails_in_one_line(
        azplakar: PlakarEnv, azurite: Azurite, big_page: tuple[ContainerClient, dict[str, bytes]],
        tmp_path: Path) -> None:
    """The page as Azurite wrote it, one name with an unescaped "&" (regular to the
    expressions, not XML): the importer plakar runs refuses it, naming why."""
    container, _ = big_page
    url = f"{container.url}?restype=container&comp=list&include=metadata"
    body = urllib.request.urlopen(url + "&" + sas(container, list=True)).read()
    body = body.replace(b"<Name>x/0300.txt</Name>", b"<Name>x/0300&.txt</Name>", 1)
    assert len(body) > xmlcheck.MIN_HELPED and b"&.txt" in body
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    rule = Rule("answer", kind="list", times=None, status=200, body=body)
    with FaultProxy(azurite.port, rules=[rule]) as px:
        pk(azplakar, "source", "add", "amp", f"azblob://{container.container_name}",
           f"account_name={ACCOUNT}", f"account_key={KEY}", f"endpoint={px.endpoint(ACCOUNT)}")
        proc = pk(azplakar, "at", store, "backup", "@amp", ok=False)
    text = output(proc)
    assert proc.returncode != 0 and len(text.strip().splitlines()) == 1, text
    assert f"cannot list azblob://{container.container_name}: the service's answer is not " \
        "a blob listing: HTTP 200, Content-Type application/xml, malformed or truncated " \
        "XML: not well-formed (invalid token): line 1, column " in text, text
    assert pk(azplakar, "at", store, "ls").stdout.strip() == ""
