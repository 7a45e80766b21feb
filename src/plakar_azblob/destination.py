"""The azblob destination connector: restore files as blobs.

The restored file ``/dir/file`` becomes blob ``PREFIX/dir/file``, written
in blocks and committed at the end, so no partial blob is ever visible; its
Content-Type is guessed from its name. Directories and symlinks write
nothing (blob storage has no such things). Extended attributes named as in
:mod:`plakar_azblob.attributes` (sent by plakar builds on kloset >= 1.2,
after all the files) set the blobs' properties, metadata and tier back
when the restore closes.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
from collections.abc import Mapping

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings

from kloset_sdk import ConnectorError, Exporter, IncomingContent, LocationFlag, Options, Record

from . import paths
from .blocks import upload_in_blocks
from .client import account_url, container_client
from .config import parse_config
from .errors import translate
from .restore_attributes import AttributeRestorer

log = logging.getLogger(__name__)

# Content-Type of files compressed as a whole (``x.tar.gz`` is gzip data).
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
               "xz": "application/x-xz", "br": "application/x-brotli"}


class AzureExporter(Exporter):
    type = "azblob"
    flags = LocationFlag.EXPORTXATTR

    def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
        super().__init__(proto, config, options)
        self._cfg = parse_config(config, "exporter")
        self._container = container_client(self._cfg)
        self.origin = paths.origin(self._cfg)
        self.root = paths.root(self._cfg)
        self._ready = False
        self._ready_lock = threading.Lock()
        self._attributes = AttributeRestorer(self._container, self._cfg.max_concurrency)

    def ping(self) -> None:
        try:
            self._container.get_container_properties()
        except ResourceNotFoundError:
            pass  # created at the first file
        except AzureError as exc:
            raise self._error(exc, f"cannot reach container {self._cfg.container!r}") from exc

    def export(self, record: Record, content: IncomingContent | None) -> None:
        if record.error:
            return
        if record.is_xattr:
            if content is not None:
                name = paths.blob_name(self._cfg, record.pathname)
                self._attributes.add(name, record.xattr_name, content)
            return
        info = record.file_info
        if info is None or not info.is_regular or content is None:
            return  # directories and symlinks: nothing to write
        self._write(record.pathname, content, info.size)

    def close(self) -> None:
        try:
            self._attributes.apply()
        finally:
            self._container.close()

    def _write(self, pathname: str, content: IncomingContent, size: int) -> None:
        name = paths.blob_name(self._cfg, pathname)
        self._create_container()
        blob = self._container.get_blob_client(name)
        try:
            upload_in_blocks(blob, content, self._cfg.block_size, self._cfg.max_concurrency,
                             size_hint=size,
                             content_settings=ContentSettings(content_type=content_type(name)),
                             standard_blob_tier=self._cfg.tier)
        except AzureError as exc:
            raise self._error(exc, f"cannot write blob {name!r}") from exc
        except ValueError as exc:
            raise ConnectorError(f"cannot write blob {name!r}: {exc}") from exc

    def _create_container(self) -> None:
        with self._ready_lock:
            if self._ready:
                return
            try:
                self._container.create_container()
                log.info("created container %s", self._cfg.container)
            except ResourceExistsError:
                pass
            except AzureError as exc:
                # A SAS may allow writing blobs but not creating containers: if the
                # container is really missing, the first upload will say so.
                log.debug("could not create container: %s", exc)
            self._ready = True

    def _error(self, exc: BaseException, what: str) -> ConnectorError:
        return translate(exc, what, endpoint=account_url(self._cfg))


def content_type(name: str) -> str:
    """The Content-Type a blob gets from its name."""
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"
