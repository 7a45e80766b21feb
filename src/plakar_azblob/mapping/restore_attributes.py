"""Set restored extended attributes back on blobs, once the files are written.

plakar sends a restore's extended attributes after all its files, one
record per attribute, while uploads may still be running in other threads
(and a blob's final commit would replace properties set earlier). So they
are collected while the restore runs, in a temporary spool that goes to
disk beyond a few MiB, and applied when the exporter closes: for each
blob, its content settings and metadata are merged over the current ones
and set, then its access tier.
"""

from __future__ import annotations

import binascii
import json
import logging
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from kloset_sdk import ConnectorError, IncomingContent

from ..clients.errors import translate
from . import attributes
from .attributes import Restore

log = logging.getLogger(__name__)

SPOOL_MEMORY = 4 * 1024 * 1024


class AttributeRestorer:
    def __init__(self, container: ContainerClient, max_concurrency: int) -> None:
        self._container = container
        self._workers = max(1, max_concurrency)
        self._lock = threading.Lock()
        # Closed by apply(), at the end of the restore.
        self._spool: IO[bytes] | None = tempfile.SpooledTemporaryFile(SPOOL_MEMORY)  # noqa: SIM115
        self._failures: list[str] = []

    def add(self, blob_name: str, attr: str, content: IncomingContent) -> None:
        """Keep attribute ``attr`` of blob ``blob_name``, whose value ``content`` streams."""
        if not attributes.is_restorable(attr):
            content.drain()
            return
        raw = content.read(attributes.MAX_VALUE_SIZE + 1)
        if len(raw) > attributes.MAX_VALUE_SIZE:
            content.drain()
            raise ConnectorError(f"extended attribute {attr} of blob {blob_name!r} is too large "
                                 f"(over {attributes.MAX_VALUE_SIZE} bytes)")
        try:
            value = raw.decode("utf-8")
            Restore.of({attr: value})  # checks it (a Content-MD5 must be base64)
        except (UnicodeDecodeError, binascii.Error) as exc:
            raise ConnectorError(f"extended attribute {attr} of blob {blob_name!r} is not "
                                 "valid text for Azure") from exc
        line = json.dumps([blob_name, attr, value]).encode() + b"\n"
        with self._lock:
            if self._spool is None:
                raise ConnectorError("extended attribute received after the restore closed")
            self._spool.write(line)

    def apply(self) -> None:
        """Set every collected attribute; raise if some blobs could not be updated."""
        with self._lock:
            spool, self._spool = self._spool, None
        if spool is None:
            return
        with spool:
            spool.seek(0)
            self._apply_all(_runs(spool))
        if self._failures:
            more = f" (and {len(self._failures) - 1} more)" if len(self._failures) > 1 else ""
            raise ConnectorError(f"could not restore the properties of {len(self._failures)} "
                                 f"blob(s): {self._failures[0]}{more}")

    def _apply_all(self, runs: Iterator[tuple[str, dict[str, str]]]) -> None:
        window = threading.BoundedSemaphore(2 * self._workers)  # bounds memory
        latest: dict[str, Future[None]] = {}  # recent work per blob, to keep its order
        with ThreadPoolExecutor(self._workers, thread_name_prefix="azblob-xattr") as pool:
            for name, attrs in runs:
                window.acquire()
                future = pool.submit(self._apply_after, latest.get(name), name, attrs)
                future.add_done_callback(lambda _: window.release())
                latest[name] = future
                if len(latest) > 8 * self._workers:
                    latest = {n: f for n, f in latest.items() if not f.done()}

    def _apply_after(self, before: Future[None] | None, name: str, attrs: dict[str, str]) -> None:
        if before is not None:
            before.result()  # submitted earlier, so already running or done
        try:
            self._apply(name, Restore.of(attrs))
        except ResourceNotFoundError:
            log.warning("azblob: properties of blob %r not restored: the blob does not exist",
                        name)
        except Exception as exc:  # each blob's failure is reported at the end
            message = str(translate(exc, f"blob {name!r}"))
            log.warning("azblob: properties not restored: %s", message)
            with self._lock:
                self._failures.append(message)

    def _apply(self, name: str, restore: Restore) -> None:
        blob = self._container.get_blob_client(name)
        current = blob.get_blob_properties()
        settings = restore.settings(current.content_settings)
        if settings is not None:
            blob.set_http_headers(settings)
        if restore.metadata:
            blob.set_blob_metadata({**(current.metadata or {}), **restore.metadata})
        if restore.tier:
            try:
                blob.set_standard_blob_tier(restore.tier)
            except AzureError as exc:
                log.warning("azblob: access tier %s not restored on blob %r: %s", restore.tier,
                            name, translate(exc, "set tier"))


def _runs(spool: IO[bytes]) -> Iterator[tuple[str, dict[str, str]]]:
    """The spooled attributes, consecutive ones of the same blob together."""
    name: str | None = None
    attrs: dict[str, str] = {}
    for line in spool:
        blob, attr, value = json.loads(line)
        if blob != name and name is not None:
            yield name, attrs
            attrs = {}
        name = blob
        attrs[attr] = value
    if name is not None:
        yield name, attrs
