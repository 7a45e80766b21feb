"""Blob properties and metadata as plakar extended attributes.

A backed-up blob carries these extended attributes, each present only when
the blob has a non-empty value for it; their values are UTF-8 text:

==============================  =========================================
``azure.content-type``          Content-Type, unless it is the one its
                                name gives (see below)
``azure.content-encoding``      Content-Encoding
``azure.content-language``      Content-Language
``azure.content-disposition``   Content-Disposition
``azure.cache-control``         Cache-Control
``azure.access-tier``           access tier (Hot, Cool, Cold, Archive),
                                only when set on the blob, not inferred
                                from the account's default
``azure.blob-type``             AppendBlob or PageBlob; absent for a
                                block blob (the default kind)
``azure.meta.<key>``            each user metadata entry ``<key>``
==============================  =========================================

On restore (with a plakar that sends extended attributes to exporters),
the content settings, metadata and access tier are set back on the blob;
``azure.blob-type`` is informative only (every blob is restored as a
block blob), and attributes of other names are ignored.

Each attribute costs plakar one Open round trip on every backup (kloset 1.1
re-reads them all, even of unchanged files), so an attribute is sent only
when a restore could not get its value otherwise. Left out: empty values;
the blob type of block blobs; a Content-Type equal to
:func:`default_content_type` of the blob's name (what the destination
sets on a blob restored without that attribute: ``application/octet-stream``,
the service's own default, for names it does not know); and Content-MD5,
which the destination computes from the bytes it uploads and sets on every
blob it writes. A typical blob thus has no attribute at all.
``azure.content-md5`` is still honoured on restore (snapshots of earlier
versions carry it).
"""

from __future__ import annotations

import base64
import functools
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field

from azure.storage.blob import ContentSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..transfer.listing import Listed

PREFIX = "azure."
META_PREFIX = "azure.meta."
ACCESS_TIER = "azure.access-tier"
BLOB_TYPE = "azure.blob-type"
BLOCK_BLOB = "BlockBlob"
CONTENT_MD5 = "azure.content-md5"
CONTENT_TYPE = "azure.content-type"

# Attribute name -> ContentSettings field.
HEADERS = {
    CONTENT_TYPE: "content_type",
    "azure.content-encoding": "content_encoding",
    "azure.content-language": "content_language",
    "azure.content-disposition": "content_disposition",
    "azure.cache-control": "cache_control",
}

# Content-Type of files compressed as a whole (``x.tar.gz`` is gzip data).
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
               "xz": "application/x-xz", "br": "application/x-brotli"}
SERVICE_DEFAULT_TYPE = "application/octet-stream"

# The most a single attribute value may weigh (Azure caps all of a blob's
# metadata at 8 KiB).
MAX_VALUE_SIZE = 64 * 1024


@functools.lru_cache(maxsize=1)
def _types() -> mimetypes.MimeTypes:
    # Python's built-in table only: the system's mime.types files differ
    # from machine to machine, and the source and the destination of one
    # blob must agree on its default.
    return mimetypes.MimeTypes()


def default_content_type(name: str) -> str:
    """The Content-Type a blob restored as ``name`` gets when no attribute sets one.

    Guessed from the name's extension, strict IANA types only, so that it
    is the same wherever the package runs; the service default
    (``application/octet-stream``) for names with no known type.
    """
    # What mimetypes reads of a plain name is its last extension: the guess is kept
    # per extension (mimetypes' own took a microsecond of every listed blob). Names
    # it reads otherwise go to it: a scheme ("data:"), no extension or one after a
    # dot or a slash (splitext's leading dots), an encoding (".gz") or an alias
    # (".tgz"), which look at the extension before.
    if ":" in name:
        return _guess(name)
    dot = name.rfind(".")
    slash = name.rfind("/")
    if dot <= slash:
        return SERVICE_DEFAULT_TYPE  # no extension at all
    if dot == slash + 1 or name[dot - 1] == ".":
        return _guess(name)
    ext = name[dot:]
    found = _BY_EXTENSION.get(ext)
    if found is None:
        lower = ext.lower()
        types = _types()
        if lower in types.encodings_map or lower in types.suffix_map:
            return _guess(name)
        found = _guess(name)
        if len(_BY_EXTENSION) < _EXTENSIONS_KEPT:
            _BY_EXTENSION[ext] = found
    return found


_BY_EXTENSION: dict[str, str] = {}
_EXTENSIONS_KEPT = 4096


def _guess(name: str) -> str:
    guessed, encoding = _types().guess_type(name, strict=True)
    if encoding is not None:
        return _COMPRESSED.get(encoding, SERVICE_DEFAULT_TYPE)
    return guessed or SERVICE_DEFAULT_TYPE


def of_blob(blob: Listed) -> dict[str, str]:
    """The extended attributes of a listed blob, name -> value (see the module docstring)."""
    if not (blob.metadata or blob.content_encoding or blob.content_language
            or blob.content_disposition or blob.cache_control
            or (blob.access_tier and not blob.tier_inferred) or blob.blob_type != BLOCK_BLOB):
        # The usual blob: at most a Content-Type, most often its name's default.
        ctype = blob.content_type
        if not ctype or ctype == default_content_type(blob.name):
            return {}
        return {CONTENT_TYPE: ctype}
    attrs = {
        CONTENT_TYPE: blob.content_type,
        "azure.content-encoding": blob.content_encoding,
        "azure.content-language": blob.content_language,
        "azure.content-disposition": blob.content_disposition,
        "azure.cache-control": blob.cache_control,
        ACCESS_TIER: "" if blob.tier_inferred else blob.access_tier,
        BLOB_TYPE: "" if blob.blob_type == BLOCK_BLOB else blob.blob_type,
    }
    if attrs[CONTENT_TYPE] == default_content_type(blob.name):
        attrs[CONTENT_TYPE] = ""
    for key, value in blob.metadata.items():
        attrs[META_PREFIX + key] = value
    return {name: value for name, value in attrs.items() if value}


def is_restorable(name: str) -> bool:
    """Whether the exporter does something with attribute ``name``."""
    return (name in HEADERS or name in (CONTENT_MD5, ACCESS_TIER)
            or (name.startswith(META_PREFIX) and len(name) > len(META_PREFIX)))


@dataclass
class Restore:
    """What a blob's extended attributes ask to set back on it."""

    headers: dict[str, str] = field(default_factory=dict)  # ContentSettings field -> value
    content_md5: bytes | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tier: str | None = None

    @classmethod
    def of(cls, attrs: Mapping[str, str]) -> Restore:
        restore = cls()
        for name, value in attrs.items():
            if name in HEADERS:
                restore.headers[HEADERS[name]] = value
            elif name == CONTENT_MD5:
                restore.content_md5 = base64.b64decode(value, validate=True)
            elif name == ACCESS_TIER:
                restore.tier = value
            elif name.startswith(META_PREFIX) and len(name) > len(META_PREFIX):
                restore.metadata[name[len(META_PREFIX):]] = value
        return restore

    def settings(self, current: ContentSettings) -> ContentSettings | None:
        """``current`` updated with our headers, or None if there is nothing to set."""
        if not self.headers and self.content_md5 is None:
            return None
        fields = {attr: getattr(current, attr, None) for attr in HEADERS.values()}
        fields.update(self.headers)
        md5 = self.content_md5 if self.content_md5 is not None else current.content_md5
        return ContentSettings(content_md5=bytearray(md5) if md5 else None, **fields)
