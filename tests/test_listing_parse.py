"""A listing page read without a tree gives what ElementTree gives, or is left to it.

The fast reading (regular expressions after expat's well-formedness check) is
only for pages as Azure writes them; these pages are built with every awkward
value a service may send: XML-escaped and numeric references, names percent-
encoded (``Encoded="true"``), metadata keys that are also element names of the
listing, empty elements written either way, missing properties.
"""

from __future__ import annotations

import random
from urllib.parse import quote
from xml.sax.saxutils import escape

import pytest

from plakar_azblob.clients.errors import UnexpectedAnswer
from plakar_azblob.transfer import listing
from plakar_azblob.transfer.direct import Page
from plakar_azblob.transfer.listing import parse_page, read_tree

AWKWARD = ["a&b", "x<y>z", 'q"uote\'s', "é/日本/😀", "tab\there", "ctl\x01\x1f", "sp ace ",
           "%41%2F", "amp;&amp;", "]]>", "-->"]


# Metadata values are HTTP header values: no control characters.
VALUES = [*(v for v in AWKWARD if not v.startswith("ctl")), ""]
TYPES = ["text/plain", 'a/b; x="1"', ""]


def ref(text: str, rng: random.Random) -> str:
    """``text`` escaped for XML, some characters as numeric references."""
    out = []
    for c in text:
        if c == "\t" or (rng.random() < 0.2 and c not in "<&>"):
            out.append(f"&#x{ord(c):X};" if rng.random() < 0.5 else f"&#{ord(c)};")
        else:
            out.append(escape(c, {'"': "&quot;", "'": "&apos;"}))
    return "".join(out)


def page(rng: random.Random, blobs: int = 60, marker: str | None = "next&one") -> bytes:
    # Azure's pages begin with a byte order mark.
    bom = rng.choice(["\ufeff", ""])
    parts = [bom + '<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
             'ServiceEndpoint="https://a.blob.core.windows.net/" ContainerName="c">'
             "<Prefix/><Marker/><MaxResults>5000</MaxResults><Blobs>"]
    for i in range(blobs):
        name = rng.choice(AWKWARD) + f"-{i}"
        # Names XML cannot hold (control characters) come percent-encoded, as from Azure.
        if rng.random() < 0.2 or any(ord(c) < 0x20 and c != "\t" for c in name):
            name_xml = f'<Name Encoded="true">{quote(name)}</Name>'
        else:
            name_xml = f"<Name>{ref(name, rng)}</Name>"
        empty = rng.choice(["<Content-Encoding />", "<Content-Encoding></Content-Encoding>"])
        props = (f"<Creation-Time>Sat, 05 Dec 2026 07:22:35 GMT</Creation-Time>"
                 f"<Last-Modified>Sun, 0{1 + i % 9} Nov 2026 1{i % 10}:22:35 GMT</Last-Modified>"
                 f"<Etag>0x8DC{i:012X}</Etag><Content-Length>{rng.randrange(10**12)}</Content-Length>"
                 f"<Content-Type>{ref(rng.choice(TYPES), rng)}"
                 f"</Content-Type>{empty}<Content-Language />"
                 f"<Cache-Control>{ref(rng.choice(['', 'max-age=1', 'no-cache & more']), rng)}"
                 "</Cache-Control><BlobType>" + rng.choice(["BlockBlob", "AppendBlob"]) +
                 "</BlobType>" + rng.choice(["<AccessTier>Cool</AccessTier>", ""]) +
                 "<AccessTierInferred>" + rng.choice(["true", "false"]) + "</AccessTierInferred>")
        meta_keys = rng.sample(["Blob", "Name", "Metadata", "Properties", "mtime", "k1", "Blobs"],
                               rng.randrange(0, 5))
        meta = "".join(f"<{k}>{ref(rng.choice(VALUES), rng)}</{k}>" if rng.random() < 0.8
                       else f"<{k} />" for k in meta_keys)
        metadata = rng.choice([f"<Metadata>{meta}</Metadata>", "<Metadata />", ""]) if meta \
            else rng.choice(["<Metadata />", ""])
        parts.append(f"<Blob>{name_xml}<Properties>{props}</Properties>{metadata}</Blob>")
    parts.append("</Blobs>")
    parts.append(f"<NextMarker>{ref(marker, rng)}</NextMarker>" if marker else "<NextMarker />")
    parts.append("</EnumerationResults>")
    return "".join(parts).encode()


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_reading_gives_what_elementtree_gives(seed: int) -> None:
    rng = random.Random(seed)
    body = page(rng, marker=rng.choice(["next&one", None, "2!88!MDAw"]))
    fast = listing._read_regular(body)
    assert fast is not None, "a regular page was left to ElementTree"
    assert fast == read_tree(Page(body, 200, "application/xml"))


PROPS = b"<Properties><Last-Modified>Sat, 05 Dec 2026 07:22:35 GMT</Last-Modified></Properties>"


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><EnumerationResults><Blobs><Blob><Name>a</Name><!-- c -->'
    + PROPS + b"</Blob></Blobs></EnumerationResults>",
    b'<?xml version="1.0"?><EnumerationResults><Blobs><Blob><Name><![CDATA[a<b]]></Name>'
    + PROPS + b"</Blob></Blobs></EnumerationResults>",
    b'<?xml version="1.0"?>\r\n<EnumerationResults><Blobs><Blob><Name>a\r\nb</Name>'
    + PROPS + b"</Blob></Blobs></EnumerationResults>",
])
def test_pages_of_another_shape_are_read_by_elementtree(body: bytes) -> None:
    assert listing._read_regular(body) is None
    assert parse_page(Page(body, 200, "text/xml")) == read_tree(Page(body, 200, "text/xml"))


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><EnumerationResults><Blobs><Blob><Name>a</Name></Blob></Blobs>',
    b'<?xml version="1.0"?><EnumerationResults><Blobs><Blob><Name>a</Nme></Blob></Blobs>'
    b"</EnumerationResults>",
    b"<html><body>Sign in to the Wi-Fi</body></html>",
    b"",
])
def test_a_broken_page_is_refused_in_one_line(body: bytes) -> None:
    with pytest.raises(UnexpectedAnswer) as info:
        parse_page(Page(body, 200, "text/html"))
    assert "not a blob listing" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("seed", range(10))
def test_a_range_reads_only_its_names_and_still_sees_the_whole_page(seed: int) -> None:
    """A range's last page: the names outside the range are not read further, the
    page's first and last names (checked against its scan) are still the page's."""
    rng = random.Random(seed)
    body = page(rng, marker=None)
    whole = listing._read_regular(body)
    assert whole is not None and len(whole.blobs) >= 2
    names = [b.name for b in whole.blobs]
    low, high = sorted(rng.sample(names, 2))

    def keep(name: str) -> bool:
        return low <= name < high

    expected = [b for b in whole.blobs if keep(b.name)]
    for parsed in (listing._read_regular(body, keep),
                   read_tree(Page(body, 200, "application/xml"), keep)):
        assert parsed is not None
        assert parsed.blobs == expected
        assert (parsed.first, parsed.last, parsed.marker) == (names[0], names[-1], None)
