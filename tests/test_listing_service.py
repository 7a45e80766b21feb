"""The listing benchmark's synthetic service answers List Blobs as Azurite does.

The same blobs (names, sizes, content type) are put in Azurite; both are then
listed through the Azure SDK, page by page, with a prefix, with a delimiter,
and as raw XML: the names, the properties the importers read, the page
boundaries and the element structure must be the same. startFrom (which
Azurite may not implement) is checked against its definition: the first name
at or after it, in code point order, then the marker continues after it.
"""

from __future__ import annotations

import hashlib
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    generate_container_sas,
)
from azurite import ACCOUNT, KEY, Azurite
from listing_service import ListingService, service_for_tests

HIER = 1200  # blobs in hier-1200: d00000/f00000 ... d00001/f00199
FLAT = 300
EMPTY = ("Metadata", *(f"Properties/{p}" for p in (
    "Content-Encoding", "Content-Language", "Content-CRC64", "Cache-Control",
    "Content-Disposition")))


def hier_name(i: int) -> str:
    return f"d{i // 1000:05d}/f{i % 1000:05d}"


def flat_name(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()[:32]


def size(i: int) -> int:  # the service's size of the blob generated i-th
    return 16 + i % 4096


@pytest.fixture(scope="module")
def service() -> Iterator[ListingService]:
    yield from service_for_tests()


@pytest.fixture(scope="module")
def filled(azurite: Azurite) -> BlobServiceClient:
    """Azurite holding hier-1200 and flat-300, as the service generates them."""
    client = BlobServiceClient.from_connection_string(azurite.connection_string)
    settings = ContentSettings(content_type="application/octet-stream")
    for container, n, name in (("hier-1200", HIER, hier_name), ("flat-300", FLAT, flat_name)):
        cc = client.get_container_client(container)
        if cc.exists():
            continue
        cc.create_container()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i, cc=cc, name=name: cc.upload_blob(
                name(i), b"x" * size(i), content_settings=settings), range(n)))
    return client


def pages(cc: ContainerClient, **kwargs: Any) -> list[list[tuple[Any, ...]]]:
    """Every page of a listing: per blob, what the importers read of it."""
    found = []
    for page in cc.list_blobs(include=["metadata"], results_per_page=500, **kwargs).by_page():
        found.append([(b.name, b.size, b.content_settings.content_type, b.blob_type,
                       # Azurite leaves out an empty <Metadata/>, Azure sends it (as the
                       # service does): the SDK reads them as {} and None.
                       b.blob_tier, b.blob_tier_inferred, b.metadata or {},
                       b.last_modified is not None,
                       bool(b.etag)) for b in page])
    return found


def ours(service: ListingService, container: str) -> ContainerClient:
    return BlobServiceClient.from_connection_string(
        service.connection_string).get_container_client(container)


@pytest.mark.parametrize(("container", "prefix"), [
    ("hier-1200", None), ("hier-1200", "d00001/"), ("hier-1200", "d00000/f0019"),
    ("flat-300", None), ("flat-300", "a"),
])
def test_pages_like_azurite(service: ListingService, filled: BlobServiceClient,
                            container: str, prefix: str | None) -> None:
    expected = pages(filled.get_container_client(container), name_starts_with=prefix)
    got = pages(ours(service, container), name_starts_with=prefix)
    assert [len(p) for p in got] == [len(p) for p in expected]
    assert got == expected
    assert sum(map(len, got)) > 0


def test_delimiter_like_azurite(service: ListingService, filled: BlobServiceClient) -> None:
    def walk(cc: ContainerClient, prefix: str = "") -> list[str]:
        return [item.name for item in cc.walk_blobs(name_starts_with=prefix, delimiter="/")]

    azure = filled.get_container_client("hier-1200")
    assert walk(ours(service, "hier-1200")) == walk(azure) == ["d00000/", "d00001/"]
    assert walk(ours(service, "hier-1200"), "d00001/") == walk(azure, "d00001/")


def _shape(element: ET.Element, path: str = "") -> set[str]:
    """The element paths of an XML document (texts and attributes left out)."""
    here = f"{path}/{element.tag}"
    found = {here}
    for child in element:
        found |= _shape(child, here)
    return found


def _xml(endpoint: str, container: str, query: str) -> ET.Element:
    url = f"{endpoint}/{container}?restype=container&comp=list&{query}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("application/xml")
        return ET.fromstring(resp.read())


def test_xml_shape_like_azurite(service: ListingService, filled: BlobServiceClient,
                                azurite: Azurite) -> None:
    sas = generate_container_sas(ACCOUNT, "hier-1200", account_key=KEY,
                                 permission=ContainerSasPermissions(list=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    query = "include=metadata&maxresults=2&prefix=d00001/"
    azure = _xml(azurite.endpoint, "hier-1200", f"{query}&{sas}")
    mine = _xml(service.endpoint, "hier-1200", query)
    # Azure sends the empty properties and metadata as empty elements, Azurite leaves
    # them out: the service's shape is Azurite's plus those. Azurite dates the tier of
    # every blob; Azure only a tier that was set (here it is the account's default).
    blob = "/EnumerationResults/Blobs/Blob/"
    azurite_shape = _shape(azure) - {blob + "Properties/AccessTierChangeTime"}
    assert azurite_shape <= _shape(mine) <= azurite_shape | {blob + tag for tag in EMPTY}
    assert mine.findtext("NextMarker") and azure.findtext("NextMarker")
    for root in (mine, azure):
        assert [e.text for e in root.iterfind("Blobs/Blob/Name")] == \
            ["d00001/f00000", "d00001/f00001"]


def test_start_from(service: ListingService) -> None:
    names = sorted(hier_name(i) for i in range(HIER))

    def listed(query: str) -> tuple[list[str], str | None]:
        root = _xml(service.endpoint, "hier-1200", query)
        return ([e.text or "" for e in root.iterfind("Blobs/Blob/Name")],
                root.findtext("NextMarker") or None)

    first, marker = listed("startFrom=d00000/f00500&maxresults=300")
    assert first == names[500:800]
    assert marker
    rest, end = listed(f"startFrom=d00000/f00500&maxresults=5000&marker={marker}")
    assert rest == names[800:]
    assert end is None
    # Inclusive of a name that exists; a name between two starts at the next one.
    assert listed("startFrom=d00001/f00199")[0] == ["d00001/f00199"]
    assert listed("startFrom=d00000/f00500a&maxresults=1")[0] == ["d00000/f00501"]
    assert listed("startFrom=d00001/f002")[0] == []
    # Code point order: a name after every generated one lists nothing.
    assert listed("startFrom=%C3%A9")[0] == []


def test_delay_and_counts(service: ListingService) -> None:
    import time

    service.reset(delay_ms=300)
    try:
        cc = ours(service, "hier-1200")
        start = time.monotonic()
        with ThreadPoolExecutor(3) as pool:  # three pages at once take one delay
            list(pool.map(lambda p: list(cc.list_blobs(name_starts_with=p)),
                          ["d00000/f001", "d00000/f002", "d00000/f003"]))
        elapsed = time.monotonic() - start
    finally:
        stats = service.stats()
        service.reset(delay_ms=0)
    assert 0.3 <= elapsed < 0.9
    assert stats["list"] == 3
    assert stats["max_in_flight"] == 3
