from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StorageResource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORAGE_RESOURCE_UNDEFINED: _ClassVar[StorageResource]
    STORAGE_RESOURCE_PACKFILE: _ClassVar[StorageResource]
    STORAGE_RESOURCE_STATE: _ClassVar[StorageResource]
    STORAGE_RESOURCE_LOCK: _ClassVar[StorageResource]
    STORAGE_RESOURCE_ECC_PACKFILE: _ClassVar[StorageResource]
    STORAGE_RESOURCE_ECC_STATE: _ClassVar[StorageResource]

class StorageFlags(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORAGE_FLAGS_UNDEFINED: _ClassVar[StorageFlags]
    STORAGE_FLAGS_HOT: _ClassVar[StorageFlags]
STORAGE_RESOURCE_UNDEFINED: StorageResource
STORAGE_RESOURCE_PACKFILE: StorageResource
STORAGE_RESOURCE_STATE: StorageResource
STORAGE_RESOURCE_LOCK: StorageResource
STORAGE_RESOURCE_ECC_PACKFILE: StorageResource
STORAGE_RESOURCE_ECC_STATE: StorageResource
STORAGE_FLAGS_UNDEFINED: StorageFlags
STORAGE_FLAGS_HOT: StorageFlags

class InitRequest(_message.Message):
    __slots__ = ("proto", "config")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROTO_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    proto: str
    config: _containers.ScalarMap[str, str]
    def __init__(self, proto: _Optional[str] = ..., config: _Optional[_Mapping[str, str]] = ...) -> None: ...

class InitResponse(_message.Message):
    __slots__ = ("origin", "type", "root", "flags")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    origin: str
    type: str
    root: str
    flags: int
    def __init__(self, origin: _Optional[str] = ..., type: _Optional[str] = ..., root: _Optional[str] = ..., flags: _Optional[int] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: bytes
    def __init__(self, config: _Optional[bytes] = ...) -> None: ...

class CreateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OpenRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OpenResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: bytes
    def __init__(self, config: _Optional[bytes] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModeResponse(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: int
    def __init__(self, mode: _Optional[int] = ...) -> None: ...

class SizeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SizeResponse(_message.Message):
    __slots__ = ("size",)
    SIZE_FIELD_NUMBER: _ClassVar[int]
    size: int
    def __init__(self, size: _Optional[int] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("type", "flags")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    type: StorageResource
    flags: StorageFlags
    def __init__(self, type: _Optional[_Union[StorageResource, str]] = ..., flags: _Optional[_Union[StorageFlags, str]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("macs",)
    MACS_FIELD_NUMBER: _ClassVar[int]
    macs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, macs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("mac", "type", "chunk", "flags")
    MAC_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    mac: bytes
    type: StorageResource
    chunk: bytes
    flags: StorageFlags
    def __init__(self, mac: _Optional[bytes] = ..., type: _Optional[_Union[StorageResource, str]] = ..., chunk: _Optional[bytes] = ..., flags: _Optional[_Union[StorageFlags, str]] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("bytes_written",)
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    bytes_written: int
    def __init__(self, bytes_written: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("mac", "type", "range", "flags")
    class Range(_message.Message):
        __slots__ = ("offset", "length")
        OFFSET_FIELD_NUMBER: _ClassVar[int]
        LENGTH_FIELD_NUMBER: _ClassVar[int]
        offset: int
        length: int
        def __init__(self, offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...
    MAC_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    mac: bytes
    type: StorageResource
    range: GetRequest.Range
    flags: StorageFlags
    def __init__(self, mac: _Optional[bytes] = ..., type: _Optional[_Union[StorageResource, str]] = ..., range: _Optional[_Union[GetRequest.Range, _Mapping]] = ..., flags: _Optional[_Union[StorageFlags, str]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("mac", "type", "flags")
    MAC_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    mac: bytes
    type: StorageResource
    flags: StorageFlags
    def __init__(self, mac: _Optional[bytes] = ..., type: _Optional[_Union[StorageResource, str]] = ..., flags: _Optional[_Union[StorageFlags, str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CloseRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CloseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
