"""Close does not cut the connector off: plakar may still call it during or after Close.

kloset (v1.1.x) releases a store's lock from a goroutine that races plakar's
Close; a Delete refused there left the lock behind, and the next
``plakar maintenance`` failed with "repository is already locked".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, NoReturn

import pytest

from kloset_sdk import IncomingContent, Range, Readable, Resource, Store, StoreFlag
from kloset_sdk._proto import store_pb2 as spb
from kloset_sdk._services.storage import StoreService

MAC = hashlib.sha256(b"lock").digest()


class Aborted(Exception):
    pass


class Context:
    """The little of a grpc.ServicerContext that the servicer uses."""

    def abort(self, code: Any, details: str) -> NoReturn:
        raise Aborted(f"{code}: {details}")

    def is_active(self) -> bool:
        return True


class LockStore(Store):
    def __init__(self, proto: str, config: dict[str, str]) -> None:
        super().__init__(proto, config)
        self.closes = 0
        self.deleted: list[bytes] = []

    def create(self, config: bytes) -> None:
        pass

    def open(self) -> bytes:
        return b"config"

    def list(self, resource: Resource, flags: StoreFlag) -> Iterable[bytes]:
        return [MAC] if MAC not in self.deleted else []

    def put(self, resource: Resource, mac: bytes, content: IncomingContent,
            flags: StoreFlag) -> int:
        return 0

    def get(self, resource: Resource, mac: bytes, range: Range | None,
            flags: StoreFlag) -> Readable:
        return [b"lock data"]

    def delete(self, resource: Resource, mac: bytes, flags: StoreFlag) -> None:
        self.deleted.append(mac)

    def close(self) -> None:
        self.closes += 1


def test_rpcs_after_close_still_reach_the_store() -> None:
    stores: list[LockStore] = []

    def factory(proto: str, config: dict[str, str]) -> LockStore:
        stores.append(LockStore(proto, config))
        return stores[-1]

    service, ctx = StoreService(factory), Context()
    service.Init(spb.InitRequest(proto="lock", config={"location": "lock://"}), ctx)
    service.Close(spb.CloseRequest(), ctx)
    service.Delete(spb.DeleteRequest(mac=MAC, type=spb.STORAGE_RESOURCE_LOCK), ctx)
    messages = service.get_encoded(spb.GetRequest(mac=MAC, type=spb.STORAGE_RESOURCE_LOCK), ctx)
    assert [spb.GetResponse.FromString(m).chunk for m in messages] == [b"lock data"]
    service.Close(spb.CloseRequest(), ctx)
    (store,) = stores
    assert store.deleted == [MAC]
    assert store.closes == 1  # closed once, however many Close calls


def test_before_init_is_still_refused() -> None:
    service = StoreService(LockStore)
    with pytest.raises(Aborted, match="the connector was used before Init"):
        service.Delete(spb.DeleteRequest(mac=MAC, type=spb.STORAGE_RESOURCE_LOCK), Context())
    service.Close(spb.CloseRequest(), Context())  # nothing to close: no error
