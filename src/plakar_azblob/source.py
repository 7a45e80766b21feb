"""The azblob source connector: back up the blobs of a container (or of a prefix).

Each blob ``NAME`` becomes the file ``/NAME`` (size, Last-Modified, mode
0644), folders become directories (mode 0755, dated by the newest thing
inside them), and the blob's properties and metadata become extended
attributes (see :mod:`plakar_azblob.mapping.attributes`). A blob whose metadata
follows rclone's or azcopy's convention (see :mod:`plakar_azblob.mapping.conventions`)
gets the time, mode, owner and kind it says instead. The listing is streamed
page by page; content is downloaded only when plakar opens a file (or, for
small blobs, just before, while plakar opens them in a row: see
:data:`READ_AHEAD`), and only if the blob is still the version that was listed.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Mapping
from functools import partial

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from kloset_sdk import (
    CHUNK_SIZE,
    ConnectorError,
    Importer,
    NotFoundError,
    Options,
    ReadAheadSettings,
    Record,
)

from .clients.config import parse_config
from .clients.errors import translate
from .clients.factory import account_url, container_client, pool_size
from .clients.retry import READ_RETRIES
from .mapping import attributes, conventions, paths
from .mapping.posix_fields import file_fields, folder_own
from .mapping.tree import Tree
from .transfer.direct import BrokenRead, DirectReader, fallback
from .transfer.listing import Listed, list_blob_pages
from .transfer.ranges import read_range, read_ranges, resumed

log = logging.getLogger(__name__)

# Blobs whose content is read before plakar opens them, while it opens one after
# the other (see ReadAheadSettings): each costs a round trip to the service,
# which plakar would otherwise wait for, one blob at a time.
READ_AHEAD = ReadAheadSettings(max_size=1 << 20, budget=8 << 20, depth=32, workers=8)
# Records handed to the SDK at once (it sends up to 256 in one piece).
SEND_CHUNK = 256
# The longest symlink target a blob may hold (Linux's PATH_MAX, its NUL excluded).
MAX_LINK_TARGET = 4095


class AzureImporter(Importer):
    type = "azblob"
    read_ahead = READ_AHEAD

    def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
        super().__init__(proto, config, options)
        self._cfg = parse_config(config, "importer")
        self._container = container_client(self._cfg)
        self._direct = DirectReader.for_client(self._container, pool_size(self._cfg))
        self.origin = paths.origin(self._cfg)
        self.root = paths.root(self._cfg)
        self._prefix = paths.listing_prefix(self._cfg)

    def ping(self) -> None:
        try:
            for _ in self._container.list_blobs(results_per_page=1).by_page():
                break
        except AzureError as exc:
            raise self._error(exc, f"cannot reach container {self._cfg.container!r}") from exc

    def scan(self) -> Iterator[list[Record]]:
        # Records go out SEND_CHUNK or so at a time (cheaper per record than one by
        # one), as a page is gone through: plakar gets the first ones of a page
        # without waiting for the whole page's.
        tree = Tree(self._cfg.prefix)
        for page in self._listing():
            records: list[Record] = []
            for blob in page:
                records.extend(self._entry(tree, blob))
                if len(records) >= SEND_CHUNK:
                    yield records
                    records = []
            if records:
                yield records
        yield tree.finish()

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        self._container.close()

    # -- the listing --

    def _listing(self) -> Iterator[list[Listed]]:
        """Every blob under the prefix, a page at a time, one page in memory."""
        pages = list_blob_pages(self._container, self._direct, self._prefix,
                                concurrency=self._cfg.list_concurrency)
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except AzureError as exc:
                raise self._error(exc, f"cannot list {self._cfg.location}") from exc
            yield page

    def _entry(self, tree: Tree, blob: Listed) -> list[Record]:
        """The records that can go out once ``blob`` is listed (see Tree)."""
        name = blob.name
        problem = paths.invalid_name(name[len(self._prefix):])
        posix = conventions.read(blob.metadata, name) if blob.metadata else None
        if problem is not None:
            return [Record.failure("/" + name,
                                   f"blob {name!r} is not a valid path: it has {problem}")]
        if name.endswith("/"):
            return tree.marker(name, blob.last_modified, folder_own(posix))
        if blob.size == 0 and (_is_folder(blob) or (posix and posix.kind == conventions.DIR)):
            return tree.folder(name, blob.last_modified, folder_own(posix))
        if blob.access_tier.lower() == "archive":
            return tree.file(name, blob.last_modified, [Record.failure(
                "/" + name, f"blob {name!r} is in the Archive tier: rehydrate it to back it up")])
        if posix is None:
            return tree.file(name, blob.last_modified, self._file(blob))
        return self._converted(tree, blob, posix)

    def _file(self, blob: Listed) -> list[Record]:
        """The file record of a blob, then one record per extended attribute."""
        path = "/" + blob.name
        attrs = {} if self.options.noxattr else attributes.of_blob(blob)
        opener = partial(self._open, blob.name, blob.etag, blob.size)
        return _with_xattrs(Record.file(path, size=blob.size, mod_time=blob.last_modified,
                                        opener=opener, xattrs=attrs), attrs)

    def _converted(self, tree: Tree, blob: Listed, posix: conventions.Posix,
                   ) -> list[Record]:
        """A blob that follows a convention: a file, or an azcopy symlink holding its
        target, with the time, mode and owner the convention gives."""
        mtime, info = file_fields(posix, blob.last_modified, blob.etag)
        path = "/" + blob.name
        attrs = {} if self.options.noxattr else attributes.of_blob(blob)
        link = posix.kind == conventions.SYMLINK and posix.style != conventions.RCLONE
        target = self._link_target(blob) if link else None
        if isinstance(target, Record):
            records = [target]
        elif target is not None:
            info.pop("mode", None)
            records = _with_xattrs(Record.symlink(path, target, mod_time=mtime, xattrs=attrs,
                                                  **info), attrs)
        else:
            opener = partial(self._open, blob.name, blob.etag, blob.size)
            records = _with_xattrs(Record.file(path, size=blob.size, mod_time=mtime,
                                               opener=opener, xattrs=attrs, **info), attrs)
        return tree.file(blob.name, mtime, records)

    def _link_target(self, blob: Listed) -> str | Record | None:
        """The target an azcopy symlink blob holds (read now: plakar needs it in the
        record); None if the blob cannot be one (then it is a file), a failure record
        if it cannot be read."""
        if not 0 < blob.size <= MAX_LINK_TARGET:
            log.debug("azblob: blob %r is flagged is_symlink but holds %d bytes: backed up "
                      "as a file", blob.name, blob.size)
            return None
        try:
            data = b"".join(self._open(blob.name, blob.etag, blob.size))
        except ConnectorError as exc:
            return Record.failure("/" + blob.name, str(exc))
        try:
            target = data.decode("utf-8")
        except UnicodeDecodeError:
            target = ""
        if not target or "\0" in target:
            log.debug("azblob: blob %r is flagged is_symlink but does not hold a target: "
                      "backed up as a file", blob.name)
            return None
        return target

    # -- content --

    def _open(self, name: str, etag: str, size: int) -> Iterator[bytes]:
        """The content of blob ``name`` as listed (same ETag), downloaded now.

        A blob larger than one block is streamed by one request, resumed where it
        broke off if the connection breaks (as the official package reads it, and
        much cheaper for the emulator than ranges); a smaller one is one GET."""
        direct = self._direct
        try:
            if direct is None:
                fallback("read")
                return self._reported(name, self._sdk_read(name, etag, size))
            if size == 0:
                direct.read(name, 0, None, etag)
                return iter(())
            if size <= self._cfg.block_size:
                data = direct.read(name, 0, None, etag).data
                if len(data) != size:
                    raise EOFError(f"got {len(data)} bytes instead of {size}")
                return iter((data,))
            first = direct.stream(name, 0, etag, CHUNK_SIZE)

            def again(at: int) -> Iterator[bytes]:
                return direct.stream(name, at, etag, CHUNK_SIZE).pieces

            return self._reported(name, resumed(first.pieces, size, again, READ_RETRIES))
        except Exception as exc:
            raise self._read_error(name, exc) from exc

    def _sdk_read(self, name: str, etag: str, size: int) -> Iterator[bytes]:
        """Blob ``name`` through the Azure SDK's objects, when there is no direct path: in
        ranges of a block read several at a time."""
        blob = self._container.get_blob_client(name)
        if size == 0:
            if blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified,
                                  decompress=False).readall():
                raise EOFError("the blob is no longer empty")
            return iter(())
        return read_ranges(partial(read_range, blob, etag), size,
                           range_size=self._cfg.block_size,
                           max_concurrency=self._cfg.max_concurrency)

    def _reported(self, name: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from chunks
        except Exception as exc:
            raise self._read_error(name, exc) from exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _read_error(self, name: str, exc: BaseException) -> ConnectorError:
        if isinstance(exc, ResourceModifiedError | EOFError):
            return ConnectorError(f"blob {name!r} changed or was deleted after it was listed: "
                                  "not backed up this time (the next backup will see it as it "
                                  "is then)")
        if isinstance(exc, ResourceNotFoundError):
            return NotFoundError(f"blob {name!r} was deleted after it was listed")
        if isinstance(exc, BrokenRead) and exc.timed_out:
            return ConnectorError(f"cannot read blob {name!r}: the download was too slow "
                                  "(stalled, or a body dripping in), and again on each retry")
        if isinstance(exc, BrokenRead) or (isinstance(exc, HttpResponseError)
                                           and exc.status_code is None):
            # The Azure SDK's downloader gave up on a body cut short, retries included.
            return ConnectorError(f"cannot read blob {name!r}: the connection broke in the "
                                  "middle of the download, and again on each retry")
        return self._error(exc, f"cannot read blob {name!r}")

    def _error(self, exc: BaseException, what: str) -> ConnectorError:
        return translate(exc, what, endpoint=account_url(self._cfg))


def _with_xattrs(first: Record, attrs: dict[str, str]) -> list[Record]:
    """``first``, then one record per extended attribute of its path."""
    records = [first]
    for name, value in attrs.items():
        records.append(Record.xattr(first.pathname, name, partial(io.BytesIO, value.encode())))
    return records


def _is_folder(blob: Listed) -> bool:
    """A hierarchical-namespace directory, as the blob API lists it."""
    return any(key.lower() == "hdi_isfolder" and value.lower() == "true"
               for key, value in blob.metadata.items())
