"""The azblob destination connector: restore files as blobs.

The restored file ``/dir/file`` becomes blob ``PREFIX/dir/file``, written
in blocks and committed at the end, so no partial blob is ever visible; its
Content-Type is the default of its name (see
:func:`plakar_azblob.mapping.attributes.default_content_type`) and its Content-MD5
the MD5 of its bytes. A file's time, mode and owner go into the metadata
keys of a tool's convention (option ``metadata_style``, see
:mod:`plakar_azblob.mapping.conventions`): by default those the file came with, known
from the names of its extended attributes, which plakar sends with each
record (even v1.1.x). Directories write nothing, nor symlinks unless a
convention says how (rclone's ``NAME.rclonelink``, azcopy's blob holding
the target): blob storage has no such things. Extended attributes named as in
:mod:`plakar_azblob.mapping.attributes` (sent by plakar builds on kloset >= 1.2,
after all the files) set the blobs' properties, metadata and tier back
when the restore closes. A path that is unsafe as a blob name (see
:mod:`plakar_azblob.mapping.paths`) fails alone; nothing is written for it.

plakar v1.1.x never pings an exporter, and reports a file that fails with
exit status 0. So the connector checks at Init what would make every file
fail: a SAS without write permission, an endpoint that cannot be reached,
credentials the service refuses. The restore then stops at once with one
clear line and a non-zero status, instead of one error per file.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Mapping

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContentSettings

from kloset_sdk import (
    ConfigError,
    ConnectorError,
    Exporter,
    FileInfo,
    IncomingContent,
    LocationFlag,
    Options,
    Record,
    filemode,
)

from .clients.config import AzureConfig, parse_config, sas_permissions
from .clients.errors import TokenError, error_code, translate
from .clients.factory import account_url, container_client
from .mapping import conventions, paths
from .mapping.attributes import default_content_type
from .mapping.restore_attributes import AttributeRestorer
from .transfer.blocks import Reader, upload_in_blocks

log = logging.getLogger(__name__)

# Answers to the Init check that do not stop a restore: the container may be
# missing (it is created at the first file), or the credentials may write
# blobs without being allowed to read the container's properties.
_PROBE_NOT_FATAL = frozenset({"ContainerNotFound", "ResourceNotFound",
                              "AuthorizationPermissionMismatch",
                              "AuthorizationResourceTypeMismatch"})


class AzureExporter(Exporter):
    type = "azblob"
    flags = LocationFlag.EXPORTXATTR

    def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
        super().__init__(proto, config, options)
        self._cfg = parse_config(config, "exporter")
        check_sas_can_write(self._cfg)
        self._container = container_client(self._cfg)
        self.origin = paths.origin(self._cfg)
        self.root = paths.root(self._cfg)
        self._ready = False
        self._ready_lock = threading.Lock()
        try:
            self._probe()
        except BaseException:
            self._container.close()
            raise
        self._attributes = AttributeRestorer(self._container, self._cfg.max_concurrency)

    def _probe(self) -> None:
        """Fail now if every file would fail: unreachable endpoint, refused credentials."""
        try:
            self._container.get_container_properties()
        except TokenError as exc:
            raise self._error(exc, f"cannot restore to {self._cfg.location}") from None
        except HttpResponseError as exc:
            if exc.status_code == 404 or error_code(exc) in _PROBE_NOT_FATAL:
                return
            raise self._error(exc, f"cannot restore to {self._cfg.location}") from None
        except AzureError as exc:
            raise self._error(exc, f"cannot restore to {self._cfg.location}") from None

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
        if info is None:
            return
        if info.is_regular and content is not None:
            self._write(record.pathname, content, info.size,
                        self._metadata(record, info, conventions.FILE))
        elif info.is_symlink and record.target:
            self._write_link(record, info)
        # directories: nothing to write

    def close(self) -> None:
        try:
            self._attributes.apply()
        finally:
            self._container.close()

    def _style(self, record: Record) -> tuple[str, frozenset[str] | None]:
        """The convention ``record`` is written back in, and its keys (None: all)."""
        style = self._cfg.metadata_style
        if style != "auto":
            return style, None
        if not record.extended_attributes:
            return conventions.NONE, None
        return conventions.style_of(record.extended_attributes)

    def _metadata(self, record: Record, info: FileInfo, kind: str) -> dict[str, str]:
        style, keys = self._style(record)
        if style == conventions.NONE:
            return {}
        return conventions.written(style, kind, info.mod_time_ns, filemode.perm(info.mode),
                                   info.uid, info.gid, keys)

    def _write_link(self, record: Record, info: FileInfo) -> None:
        """A symlink as the convention's blob holding its target (none: nothing)."""
        style, _keys = self._style(record)
        if style == conventions.NONE:
            return
        metadata = self._metadata(record, info, conventions.SYMLINK)
        pathname = record.pathname
        if style == conventions.RCLONE:
            pathname += conventions.RCLONE_LINK_SUFFIX
        target = record.target.encode()
        self._write(pathname, io.BytesIO(target), len(target), metadata)

    def _write(self, pathname: str, content: Reader, size: int,
               metadata: dict[str, str]) -> None:
        name = paths.blob_name(self._cfg, pathname)
        self._create_container()
        blob = self._container.get_blob_client(name)
        try:
            upload_in_blocks(blob, content, self._cfg.block_size, self._cfg.max_concurrency,
                             size_hint=size,
                             content_settings=ContentSettings(
                                 content_type=default_content_type(name)),
                             standard_blob_tier=self._cfg.tier, content_md5=True,
                             metadata=metadata or None)
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


def check_sas_can_write(cfg: AzureConfig) -> None:
    """Refuse a SAS whose permissions (``sp=``) allow neither writing nor creating blobs."""
    token = cfg.sas()
    letters = sas_permissions(token) if token else None
    if letters is not None and not set(letters) & {"w", "c"}:
        source = "the connection string's SharedAccessSignature" if cfg.connection_string \
            else "sas_token"
        raise ConfigError(f'{source} cannot write blobs (its permissions are "{letters}"): '
                          "a destination needs w (write) or c (create)")
