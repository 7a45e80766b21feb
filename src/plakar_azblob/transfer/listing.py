"""List a container's blobs, page by page, parsing the service's XML directly.

The Azure SDK turns each listed blob into its generated model and then into
a ``BlobProperties`` (about 0.26 ms of CPU per blob): with two importers
per backup (plakar's second one counts), listing was most of an
incremental backup's CPU. Here a page is fetched by the direct reader and
its XML read with ElementTree into :class:`Listed`, the few fields the
connectors use (about 0.04 ms per blob). A page is taken only if it is one
(root element ``EnumerationResults``): anything else a 200 may carry (a
gateway's HTML page, garbage, truncated XML) fails the listing with one line
naming the status and content type, where it would otherwise read as an
empty last page. Only when the direct path cannot be built at all does the
SDK list (counted, see :func:`.direct.fallback`).
"""

from __future__ import annotations

import contextlib
import enum
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import CancelledError
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import unquote

from azure.storage.blob import BlobProperties, ContainerClient

from ..clients.errors import UnexpectedAnswer
from .direct import DirectReader, Page, fallback
from .keyranges import KeyRanges, PageInfo, Slice
from .wellformed import REGULAR, verdict
from .xmlcheck import PageChecker

# The metadata of blobs that have none: shared, and read-only so that it stays empty.
_NO_METADATA: Mapping[str, str] = MappingProxyType({})
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


class Listed(NamedTuple):
    """A listed blob: what the connectors use of its properties.

    A named tuple, not a dataclass: a page builds 5000 of them, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost five
    times a tuple's construction."""

    name: str
    size: int
    last_modified: datetime
    etag: str
    content_type: str = ""
    content_encoding: str = ""
    content_language: str = ""
    content_disposition: str = ""
    cache_control: str = ""
    access_tier: str = ""
    tier_inferred: bool = False  # the tier is the account's default, not set on the blob
    blob_type: str = "BlockBlob"
    metadata: Mapping[str, str] = _NO_METADATA

    @classmethod
    def from_sdk(cls, blob: BlobProperties) -> Listed:
        s = blob.content_settings
        return cls(
            name=blob.name, size=int(blob.size or 0), last_modified=blob.last_modified,
            etag=str(blob.etag), content_type=s.content_type or "",
            content_encoding=s.content_encoding or "",
            content_language=s.content_language or "",
            content_disposition=s.content_disposition or "", cache_control=s.cache_control or "",
            access_tier=_text(blob.blob_tier), tier_inferred=bool(blob.blob_tier_inferred),
            blob_type=_text(blob.blob_type) or "BlockBlob", metadata=dict(blob.metadata or {}))


def list_blobs(container: ContainerClient, direct: DirectReader | None,
               prefix: str | None, page_size: int | None = None,
               concurrency: int = 1) -> Iterator[Listed]:
    """Every blob whose name starts with ``prefix``, in name order, with its metadata;
    pages fetched ahead, key ranges listed ``concurrency`` at a time (see
    :mod:`.keyranges`).

    Errors are the SDK's (``AzureError``), :class:`UnexpectedAnswer` for a page that
    is not one."""
    for page in list_blob_pages(container, direct, prefix, page_size, concurrency):
        yield from page


def list_blob_pages(container: ContainerClient, direct: DirectReader | None,
                    prefix: str | None, page_size: int | None = None,
                    concurrency: int = 1) -> Iterator[list[Listed]]:
    """:func:`list_blobs`, a page at a time (a page may be empty)."""
    if direct is None:
        fallback("listing")
        pages = container.list_blobs(name_starts_with=prefix or None, include=["metadata"],
                                     results_per_page=page_size).by_page()
        for page in pages:
            yield [Listed.from_sdk(blob) for blob in page]
        return
    # Pages checked for well-formed XML where they arrive, mostly by a helper
    # process (see .xmlcheck): read here without that check's CPU.
    with PageChecker() as checker:
        for piece in _pages(direct, prefix, page_size, concurrency, metadata=True,
                            checker=checker):
            # Only the names of the page's range are read whole (a range's last page
            # is mostly the next range's names).
            parsed = parse_page(piece.page, None if piece.whole else piece.keeps)
            _check(piece, parsed.first, parsed.last, parsed.marker)
            yield parsed.blobs


def list_names(container: ContainerClient, direct: DirectReader | None, prefix: str | None,
               page_size: int | None = None, concurrency: int = 1) -> Iterator[str]:
    """The names of the blobs that start with ``prefix``, in order (see :func:`list_blobs`)."""
    if direct is None:
        fallback("listing")
        yield from container.list_blob_names(name_starts_with=prefix or None,
                                             results_per_page=page_size)
        return
    for piece in _pages(direct, prefix, page_size, concurrency, metadata=False):
        root = page_root(piece.page)
        names = [_name(el) for el in root.iterfind("Blobs/Blob/Name")]
        _check(piece, names[0] if names else None, names[-1] if names else None,
               root.findtext("NextMarker") or None)
        if piece.whole:
            yield from names
        else:
            yield from (name for name in names if piece.keeps(name))


def _pages(direct: DirectReader, prefix: str | None, page_size: int | None,
           concurrency: int, metadata: bool,
           checker: PageChecker | None = None) -> KeyRanges[Page]:
    def fetch(marker: str | None, start_from: str | None) -> Page:
        page = direct.list_page(prefix, marker, page_size, metadata=metadata,
                                start_from=start_from)
        checked = checker.submit(page.body, _continues(page.body)) if checker else None
        return replace(page, checked=checked) if checked is not None else page
    return KeyRanges(prefix or "", fetch, scan_page, concurrency)


# What the scheduling reads of a page without parsing it (the page is parsed
# whole, once, by the consumer). Azure writes a blob's <Name> first in its
# <Blob>; a <Blob> element inside <Metadata> (a key named "Blob") holds text.
_BLOB_NAME = re.compile(rb'<Blob>\s*<Name(?:\s+Encoded="(\w+)")?\s*>([^<]*)</Name>')
_NEXT_MARKER = re.compile(rb"<NextMarker>([^<]*)</NextMarker>")


def _continues(body: bytes) -> bool:
    """Whether a page says more follow (a NextMarker with text, near its end)."""
    at = body.rfind(b"<NextMarker>", max(0, len(body) - 8192))
    return at >= 0 and body[at + 12:at + 13] not in (b"<", b"")


def scan_page(page: Page, every_name: bool) -> PageInfo:
    """The first and last names of a List Blobs page, their count and the next marker
    (and with ``every_name``, all its names); :class:`UnexpectedAnswer` if it is not a
    listing."""
    body = page.body
    if b"<EnumerationResults" not in body[:1024]:
        page_root(page)  # raises, naming what came instead
    first = _BLOB_NAME.search(body)
    last = None
    at = len(body)
    while first is not None and last is None:
        at = body.rfind(b"<Blob>", 0, at)
        last = _BLOB_NAME.match(body, at) if at >= 0 else first
    marker_at = body.rfind(b"<NextMarker>")
    found = _NEXT_MARKER.match(body, marker_at) if marker_at >= 0 else None
    names: tuple[str, ...] = ()
    if every_name:
        names = tuple(_scanned(m) for m in _BLOB_NAME.finditer(body))
    return PageInfo(first=_scanned(first) if first else None,
                    last=_scanned(last) if last else None,
                    count=_count(body) if first else 0,
                    marker=html.unescape(found.group(1).decode()) or None if found else None,
                    names=names)


def _count(body: bytes) -> int:
    return body.count(b"<Blob><Name") or sum(1 for _ in _BLOB_NAME.finditer(body))


def _scanned(match: re.Match[bytes]) -> str:
    text = match.group(2).decode()
    if "&" in text:
        text = html.unescape(text)
    encoded = match.group(1)
    return unquote(text) if encoded and encoded.lower() == b"true" else text


def _check(piece: Slice[Page], first: str | None, last: str | None,
           marker: str | None) -> None:
    """The parsed page says what its scan said (the listing's ranges were cut on it)."""
    info = piece.info
    if (first, last, marker) != (info.first, info.last, info.marker):
        raise UnexpectedAnswer(message="the service's blob listing could not be read "
                                       "consistently (its names or marker differ between "
                                       "two readings)")


def page_root(page: Page) -> ET.Element:
    """The XML root of a List Blobs answer, if it is one (``EnumerationResults``);
    :class:`UnexpectedAnswer` naming the status and content type if not."""
    try:
        root = ET.fromstring(page.body)
    except ET.ParseError as exc:
        why = f"malformed or truncated XML: {exc}" if page.body.strip() else "an empty body"
    else:
        if root.tag == "EnumerationResults":
            return root
        why = f"XML whose root is <{root.tag[:40]}>"
    raise UnexpectedAnswer(message=f"the service's answer is not a blob listing: "
                                   f"HTTP {page.status}, Content-Type "
                                   f"{page.content_type or 'none'}, {why}")


def _name(element: ET.Element) -> str:
    """A blob's name from its ``<Name>`` (percent-encoded when ``Encoded="true"``)."""
    name = element.text or ""
    return unquote(name) if element.get("Encoded", "").lower() == "true" else name


class Parsed(NamedTuple):
    """One List Blobs answer, read."""

    blobs: list[Listed]  # those kept (see parse_page)
    marker: str | None  # of the next page (None: the last page)
    first: str | None  # the page's first and last names, kept or not
    last: str | None


def parse_page(page: Page, keep: Callable[[str], bool] | None = None) -> Parsed:
    """The blobs of one List Blobs answer (with ``keep``, only the names it keeps:
    the others are not read further), and its marker."""
    checked = None
    if page.checked is not None:
        # Cancelled only once its listing is closed: then checked here.
        with contextlib.suppress(CancelledError):
            checked = page.checked.result()
    fast = _read_regular(page.body, keep, checked)
    return fast if fast is not None else read_tree(page, keep)


def read_tree(page: Page, keep: Callable[[str], bool] | None = None) -> Parsed:
    """:func:`parse_page` through ElementTree, whatever the page's shape."""
    root = page_root(page)
    found = []
    first = last = None
    for blob in root.iterfind("Blobs/Blob"):
        name_el = blob.find("Name")
        name = _name(name_el) if name_el is not None else ""
        if first is None:
            first = name
        last = name
        if keep is not None and not keep(name):
            continue
        props_el = blob.find("Properties")
        props = {c.tag: c.text or "" for c in props_el} if props_el is not None else {}
        meta_el = blob.find("Metadata")
        metadata = {c.tag: c.text or "" for c in meta_el} if meta_el is not None else {}
        found.append(_listed(name, props, metadata))
    marker = root.findtext("NextMarker") or None
    return Parsed(found, marker, first, last)


def _listed(name: str, props: Mapping[str, str], metadata: Mapping[str, str]) -> Listed:
    get = props.get
    return Listed(
        name, int(get("Content-Length") or 0), http_date(get("Last-Modified", "")),
        get("Etag", ""), get("Content-Type", ""), get("Content-Encoding", ""),
        get("Content-Language", ""), get("Content-Disposition", ""), get("Cache-Control", ""),
        get("AccessTier", ""), get("AccessTierInferred", "").lower() == "true",
        get("BlobType") or "BlockBlob", metadata or _NO_METADATA)


# A page as Azure writes it is regular: one line of elements, no comments, CDATA,
# processing instructions or carriage returns, no attribute but <Name>'s Encoded.
# Such a page, once expat has checked it is well-formed XML, is read with regular
# expressions: about twice cheaper than ElementTree's tree of ~30 elements per blob
# (the parse was a third of the importer's CPU per record). Anything else is read
# by ElementTree, which is also what names a page that is not a listing. The
# check (.wellformed.verdict: well-formed, and no comment, CDATA, processing
# instruction or DTD) is mostly done by a helper process as the page arrives.
_ENTRY = re.compile(r'<Blob>\s*<Name(?:\s+Encoded="(\w+)")?\s*>([^<]*)</Name>')
_LEAF = re.compile(r"<([^<>/\s]+)(?:>([^<]*)</\1>|\s*/>)")
# The properties the connectors read. Once expat has found the page well-formed,
# text right after one of their start tags and up to "<" is that element's whole
# content: no need to match its end tag. Naming them (rather than taking every
# element) halves the cost: most of a blob's properties are not read.
_VALUED = re.compile("<(" + "|".join(re.escape(tag) for tag in (
    "Last-Modified", "Etag", "Content-Length", "Content-Type", "Content-Encoding",
    "Content-Language", "Content-Disposition", "Cache-Control", "AccessTier",
    "AccessTierInferred", "BlobType")) + ")>([^<]+)<")
_REFERENCE = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _read_regular(body: bytes, keep: Callable[[str], bool] | None = None,
                  checked: bytes | None = None) -> Parsed | None:
    """The page read without a tree, or None if it is not a regular, well-formed one
    (``checked``: its :func:`.wellformed.verdict`, if already known)."""
    if b"<EnumerationResults" not in body[:512] or not body[-64:].rstrip().endswith(
            b"</EnumerationResults>") or b"\r" in body:
        return None
    if (checked or verdict(body)) != REGULAR:
        return None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    entries = list(_ENTRY.finditer(text))
    found = []
    find = text.find
    first = last = None
    for i, entry in enumerate(entries):
        # The last blob ends at the last </Blobs> (a metadata key may be named Blobs).
        end = entries[i + 1].start() if i + 1 < len(entries) else text.rfind("</Blobs>")
        name = entry.group(2)
        if "&" in name:
            name = _xml_text(name)
        if entry.group(1) and entry.group(1).lower() == "true":
            name = unquote(name)
        if first is None:
            first = name
        last = name
        if keep is not None and not keep(name):
            continue
        after = entry.end()
        start = find("<Properties>", after, end)
        stop = find("</Properties>", start, end)
        if 0 <= start < stop:
            # Elements with text only: an empty one reads as absent, which is the same.
            props = dict(_VALUED.findall(text, start + 12, stop))
            if find("&", start, stop) >= 0:
                props = {tag: _xml_text(value) for tag, value in props.items()}
        else:
            props = {}
        metadata = _NO_METADATA
        start = find("<Metadata>", max(stop, after), end)
        if start >= 0:
            stop = text.rfind("</Metadata>", start, end)
            if start < stop:
                metadata = _leaves(text, start + 10, stop)
        found.append(_listed(name, props, metadata))
    marker_at = text.rfind("<NextMarker>")
    marker = None
    if marker_at >= 0:
        marker = _xml_text(text[marker_at + 12:text.find("<", marker_at + 12)]) or None
    return Parsed(found, marker, first, last)


def _leaves(text: str, start: int, stop: int) -> dict[str, str]:
    """The elements between ``start`` and ``stop`` that hold text: tag -> text."""
    if text.find("&", start, stop) < 0:  # the usual case: nothing to replace
        return dict(_LEAF.findall(text, start, stop))
    return {tag: _xml_text(value) for tag, value in _LEAF.findall(text, start, stop)}


def _xml_text(value: str) -> str:
    """Character data with its references replaced, as an XML parser reads it."""
    return _REFERENCE.sub(_replace, value) if "&" in value else value


def _replace(match: re.Match[str]) -> str:
    ref = match.group(1)
    if ref[0] == "#":
        return chr(int(ref[2:], 16) if ref[1] in "xX" else int(ref[1:]))
    return _NAMED[ref]


def http_date(text: str) -> datetime:
    """``Wed, 02 Dec 2026 04:28:49 GMT`` as an aware UTC datetime."""
    # The usual shape, 29 characters: the minute's datetime (cached) plus the seconds.
    # Building a datetime from the text's numbers was 1.5 us of every listed blob.
    if len(text) == 29 and text[22] == ":" and text[25:] == " GMT":
        seconds = _SECONDS.get(text[23:25])
        if seconds is not None:
            minute = _MINUTES.get(text[:22])
            if minute is None:
                minute = _parse_http_date(text[:22] + ":00 GMT")
                if len(_MINUTES) >= _MINUTES_KEPT:
                    _MINUTES.clear()
                _MINUTES[text[:22]] = minute
            return minute + seconds
    return _parse_http_date(text)


_MINUTES: dict[str, datetime] = {}
_MINUTES_KEPT = 1 << 16
_SECONDS = {f"{s:02d}": timedelta(seconds=s) for s in range(60)}


def _parse_http_date(text: str) -> datetime:
    try:
        _, day, month, year, hms, zone = text.split()
        if zone not in ("GMT", "UTC"):
            raise ValueError(zone)
        hour, minute, second = hms.split(":")
        return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute),
                        int(second), tzinfo=timezone.utc)
    except (ValueError, KeyError):
        return parsedate_to_datetime(text).astimezone(timezone.utc)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)
