"""The well-formedness check of a listing page, and the helper process that makes it.

Run as a script (``python -I -S wellformed.py``, or the frozen build with
:data:`HELPER_ARG`) this is the helper of :mod:`.xmlcheck`: it reads
``length + page`` from its stdin and answers one verdict byte per page, in
order, until its stdin ends (so it never outlives the importer that started
it). The standard library only, and nothing of the package: a small process.
"""

from __future__ import annotations

import os
import xml.parsers.expat
from typing import Any

REGULAR = b"r"  # well-formed, and nothing the regular reading does not expect
IRREGULAR = b"i"  # well-formed, with a comment, CDATA, a processing instruction or a DTD
MALFORMED = b"m"
HELPER_ARG = "check-xml"  # the frozen build's argument that makes it the helper
HEAD = 8  # a page's length, big-endian, before it


def verdict(body: bytes | bytearray) -> bytes:
    """:data:`REGULAR`, :data:`IRREGULAR` or :data:`MALFORMED`, for one page."""
    irregular = False

    def flag(*_: object) -> None:
        nonlocal irregular
        irregular = True

    parser = xml.parsers.expat.ParserCreate()
    # Called only when the page has one: nothing to pay for a regular page.
    parser.CommentHandler = flag
    parser.StartCdataSectionHandler = flag
    parser.ProcessingInstructionHandler = flag  # the XML declaration is not one
    parser.StartDoctypeDeclHandler = flag
    try:
        parser.Parse(body, True)
    except xml.parsers.expat.ExpatError:
        return MALFORMED
    return IRREGULAR if irregular else REGULAR


def serve(source: int = 0, sink: int = 1) -> None:
    """The helper: a verdict on ``sink`` for each page read from ``source``, until
    ``source`` ends (the importer closed it, or is gone)."""
    with open(source, "rb", buffering=0, closefd=False) as pages:
        while True:
            head = _read(pages, HEAD)
            if head is None:
                return
            body = _read(pages, int.from_bytes(head, "big"))
            os.write(sink, MALFORMED if body is None else verdict(body))


def _read(stream: Any, size: int) -> bytearray | None:
    """``size`` bytes (None if the stream ends first), in one buffer: a page is not
    copied again (expat reads a bytearray as is)."""
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = stream.readinto(view[got:])
        if not n:
            return None
        got += n
    return buffer


if __name__ == "__main__":
    serve()
