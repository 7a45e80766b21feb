"""The azblob storage connector: a Kloset store kept in an Azure Blob container."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobClient, ContainerClient, StandardBlobTier

from kloset_sdk import (
    CHUNK_SIZE,
    AlreadyExistsError,
    ConnectorError,
    IncomingContent,
    Mode,
    NotFoundError,
    PermissionDeniedError,
    Range,
    Readable,
    Resource,
    Store,
    StoreFlag,
)

from .clients.config import parse_config, sas_permissions
from .clients.errors import translate
from .clients.factory import account_url, container_client, pool_size
from .clients.retry import READ_RETRIES
from .mapping import layout, paths
from .transfer.blocks import upload_in_blocks
from .transfer.direct import DirectReader, fallback
from .transfer.listing import list_names
from .transfer.ranges import resumed

# Resources the ``tier`` option applies to (unless flagged HOT): the bulk data.
TIERED = (Resource.PACKFILE, Resource.ECC_PACKFILE)
_TIERS = {"hot": StandardBlobTier.HOT, "cool": StandardBlobTier.COOL,
          "cold": StandardBlobTier.COLD}


class AzureStore(Store):
    """Objects are blobs named as by the official Go connector (see ``layout``)."""

    type = "azblob"
    list_page_size = 5000  # names per listing request (the service maximum)

    def __init__(self, proto: str, config: Mapping[str, str]) -> None:
        super().__init__(proto, config)
        self.cfg = parse_config(config, "storage")
        self.url = account_url(self.cfg)
        # Same identity as the source and destination: account and container.
        self.origin = paths.origin(self.cfg)
        self.root = paths.root(self.cfg)
        self._client: ContainerClient | None = container_client(self.cfg)
        self._direct = DirectReader.for_client(self._client, pool_size(self.cfg))
        self._client_lock = threading.Lock()
        self._tier = _TIERS[self.cfg.tier] if self.cfg.tier else None
        # Caps the upload buffers of all concurrent puts together (memory bound):
        # plakar puts two packfiles at a time, so each gets half the requests in
        # flight, plus the block it is reading. No deadlock: a put holds a slot
        # only while it reads or sends that block. (4 slots more, as before,
        # cost 16 MiB of peak memory and no speed, even with 20 ms per request.)
        self._buffers = threading.BoundedSemaphore(self.cfg.max_concurrency // 2 + 2)

    @property
    def client(self) -> ContainerClient:
        """The container's client; a new one if the store was closed.

        plakar may still send a Delete during or just after Close: kloset
        releases its repository lock from a goroutine that races Close, and a
        lock left behind stops the next ``plakar maintenance``.
        """
        with self._client_lock:
            if self._client is None:
                self._client = container_client(self.cfg)
                self._direct = DirectReader.for_client(self._client, pool_size(self.cfg))
            return self._client

    @property
    def direct(self) -> DirectReader | None:
        """Reads outside the Azure SDK's pipeline (see :mod:`plakar_azblob.transfer.direct`)."""
        _ = self.client
        return self._direct

    # -- helpers --
    def _fail(self, exc: BaseException, what: str) -> NoReturn:
        # "from None": the Azure exception's text may hold a signed URL.
        raise translate(exc, what, endpoint=self.url) from None

    def _fail_write(self, exc: BaseException, what: str) -> NoReturn:
        """Like _fail, and says so when the credentials only allow reading."""
        e = translate(exc, what, endpoint=self.url)
        if isinstance(e, PermissionDeniedError) and not self.mode() & Mode.WRITE:
            e = PermissionDeniedError(f"{e}: {self._read_only_reason()}")
        raise e from None

    def _read_only_reason(self) -> str:
        if self.cfg.auth_method == "anonymous":
            return "the store is read-only with no_auth=true"
        token = self.cfg.sas()
        perms = sas_permissions(token) if token else None
        return f'the store is read-only with this SAS token (permissions "{perms}")'

    def _name(self, resource: Resource, mac: bytes) -> str:
        try:
            return layout.object_name(self.cfg.prefix, resource, mac)
        except layout.LayoutError as exc:
            raise ConnectorError(str(exc)) from None

    def _tier_for(self, resource: Resource, flags: StoreFlag) -> StandardBlobTier | None:
        if resource in TIERED and not flags & StoreFlag.HOT:
            return self._tier
        return None

    # -- the store --
    def create(self, config: bytes) -> None:
        where = self.cfg.location
        try:
            self.client.create_container()
        except ResourceExistsError:
            pass  # created before, or by a concurrent create: CONFIG decides below
        except Exception as exc:
            e = translate(exc, f"cannot create the container for {where}", endpoint=self.url)
            # A container-scoped SAS may not create containers; the container may exist anyway.
            if not isinstance(e, PermissionDeniedError):
                raise e from None
        name = layout.config_name(self.cfg.prefix)
        try:
            # overwrite=False sends If-None-Match: *, so of two racing creates only one wins.
            self.client.upload_blob(name, config, overwrite=False)
        except ResourceExistsError:
            raise AlreadyExistsError(f"a Kloset store already exists at {where}") from None
        except Exception as exc:
            self._fail_write(exc, f"cannot create a Kloset store at {where}")

    def open(self) -> bytes:
        name = layout.config_name(self.cfg.prefix)
        direct = self.direct
        try:
            if direct is not None:
                return direct.read(name, 0, None).data
            fallback("read")
            return self.client.download_blob(name).readall()
        except Exception as exc:
            e = translate(exc, f"cannot open the Kloset store at {self.cfg.location}",
                          endpoint=self.url)
            if isinstance(e, NotFoundError) and "ContainerNotFound" not in str(e):
                e = NotFoundError(f"no Kloset store at {self.cfg.location}: CONFIG not found")
            raise e from None

    def ping(self) -> None:
        what = f"cannot access {self.cfg.location}"
        try:
            self.client.get_container_properties()
            return
        except Exception as exc:
            e = translate(exc, what, endpoint=self.url)
            # A container SAS or anonymous access may list without reading properties.
            if not isinstance(e, PermissionDeniedError) or \
                    self.cfg.auth_method == "account_key":
                raise e from None
        try:
            pages = self.client.list_blob_names(results_per_page=1).by_page()
            next(pages, None)
        except Exception as exc:
            self._fail(exc, what)

    def mode(self) -> Mode:
        if self.cfg.auth_method == "anonymous":
            return Mode.READ  # anonymous access never allows writes
        token = self.cfg.sas()
        perms = sas_permissions(token) if token else None
        if perms is None:
            return Mode.READ_WRITE  # not a SAS, or a SAS bound to a stored policy
        mode = Mode.NONE
        if "r" in perms:
            mode |= Mode.READ
        if "w" in perms:
            mode |= Mode.WRITE
        return mode

    def size(self) -> int:
        start = f"{self.cfg.prefix}/" if self.cfg.prefix else None
        try:
            return sum(b.size or 0 for b in self.client.list_blobs(name_starts_with=start))
        except Exception as exc:
            self._fail(exc, f"cannot measure {self.cfg.location}")

    def list(self, resource: Resource, flags: StoreFlag) -> Iterable[bytes]:
        try:
            start = layout.resource_prefix(self.cfg.prefix, resource)
        except layout.LayoutError as exc:
            raise ConnectorError(str(exc)) from None
        what = f'cannot list "{start}"'
        names = list_names(self.client, self.direct, start, self.list_page_size,
                           self.cfg.list_concurrency)
        try:
            # The first name is fetched now so that errors come from list() itself.
            first = next(names, None)
        except Exception as exc:
            self._fail(exc, what)
        return self._macs(start, first, names, what)

    def _macs(self, start: str, first: str | None, names: Iterator[str],
              what: str) -> Iterator[bytes]:
        name = first
        while name is not None:
            if not layout.is_fanout_dir(start, name):
                try:
                    yield layout.parse_name(start, name)
                except layout.LayoutError as exc:
                    raise ConnectorError(str(exc)) from None
            try:
                name = next(names, None)
            except Exception as exc:
                self._fail(exc, what)

    def put(self, resource: Resource, mac: bytes, content: IncomingContent,
            flags: StoreFlag) -> int:
        name = self._name(resource, mac)
        blob = self.client.get_blob_client(name)
        try:
            return self._upload(blob, content, self._tier_for(resource, flags))
        except Exception as exc:
            self._fail_write(exc, f'cannot write blob "{name}"')

    def _upload(self, blob: BlobClient, content: IncomingContent,
                tier: StandardBlobTier | None) -> int:
        tier_kw: dict[str, Any] = {"standard_blob_tier": tier} if tier else {}
        return upload_in_blocks(blob, content, self.cfg.block_size, self.cfg.max_concurrency,
                                buffers=self._buffers, **tier_kw)

    def get(self, resource: Resource, mac: bytes, range: Range | None,
            flags: StoreFlag) -> Readable:
        name = self._name(resource, mac)
        what = f'blob "{name}"'
        try:
            if range is not None and range.length == 0:
                self.client.get_blob_client(name).get_blob_properties()  # a missing object fails
                return []
            direct = self.direct
            if direct is None:
                fallback("read")
                blob = self.client.get_blob_client(name)
                downloader = blob.download_blob() if range is None else \
                    blob.download_blob(offset=range.offset, length=range.length)
                return self._chunks(downloader.chunks(), what)
            if range is not None and range.length <= self.cfg.block_size:
                # At most a block: one request (fewer bytes if the object ends first).
                return [direct.read(name, range.offset, range.length, shorter=True).data]
            return self._chunks(self._streamed(direct, name, range), what)
        except Exception as exc:
            self._fail(exc, what)

    def _streamed(self, direct: DirectReader, name: str,
                  range: Range | None) -> Iterator[bytes]:
        """The whole object (or ``range`` of it), streamed by one request (resumed if the
        connection breaks, from the same version). One request for a long range, as the
        official package makes, rather than ranges of a block: Azurite hashes every
        range of up to 4 MiB it serves."""
        start = range.offset if range is not None else 0
        length = range.length if range is not None else None
        first = direct.stream(name, start, None, CHUNK_SIZE, length)
        etag, end = first.etag, first.size  # where this stream ends (object or range)

        def again(at: int) -> Iterator[bytes]:
            return direct.stream(name, start + at, etag, CHUNK_SIZE, end - start - at).pieces

        return resumed(first.pieces, end - start, again, READ_RETRIES)

    def _chunks(self, chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
        try:
            yield from chunks
        except Exception as exc:
            self._fail(exc, what)

    def delete(self, resource: Resource, mac: bytes, flags: StoreFlag) -> None:
        name = self._name(resource, mac)
        try:
            self.client.delete_blob(name)
        except Exception as exc:
            # A missing object is reported as NotFoundError, like the Go connector does.
            self._fail_write(exc, f'cannot delete blob "{name}"')

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
            direct, self._direct = self._direct, None
        if direct is not None:
            direct.close()
        if client is not None:
            client.close()
