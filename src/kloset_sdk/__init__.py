"""A Python SDK for writing Plakar (Kloset) connectors.

A connector subclasses :class:`Importer`, :class:`Exporter` or :class:`Store`
and calls :func:`serve` from its executable; the SDK speaks plakar's gRPC
plugin protocol over the process's stdin/stdout.

Names are imported on first use (PEP 562), so that a process importing one
light submodule (the fork server's launcher, see :mod:`kloset_sdk.forkserver`)
pays for nothing else; the server and its protocol code are loaded only by
:func:`serve`.
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing alone costs the launcher ~10 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from . import filemode
    from .connector import Connector
    from .content import CHUNK_SIZE, IncomingContent, iter_chunks
    from .errors import (
        AlreadyExistsError,
        ConfigError,
        ConnectorError,
        NotFoundError,
        PermissionDeniedError,
    )
    from .exporter import Exporter
    from .importer import Importer
    from .options import LocationFlag, Options
    from .readahead import ReadAheadSettings
    from .records import FileInfo, Opener, Readable, Record, Result, XattrType
    from .server import serve
    from .storage import Mode, Range, Resource, Store, StoreFlag

# Public name -> the submodule defining it.
_HOMES = {
    "filemode": ".filemode",
    "Connector": ".connector",
    "CHUNK_SIZE": ".content", "IncomingContent": ".content", "iter_chunks": ".content",
    "AlreadyExistsError": ".errors", "ConfigError": ".errors", "ConnectorError": ".errors",
    "NotFoundError": ".errors", "PermissionDeniedError": ".errors",
    "Exporter": ".exporter",
    "Importer": ".importer",
    "LocationFlag": ".options", "Options": ".options",
    "ReadAheadSettings": ".readahead",
    "FileInfo": ".records", "Opener": ".records", "Readable": ".records", "Record": ".records",
    "Result": ".records", "XattrType": ".records",
    "serve": ".server",
    "Mode": ".storage", "Range": ".storage", "Resource": ".storage", "Store": ".storage",
    "StoreFlag": ".storage",
}

__all__ = [
    "CHUNK_SIZE", "AlreadyExistsError", "ConfigError", "Connector", "ConnectorError",
    "Exporter", "FileInfo", "Importer", "IncomingContent", "LocationFlag", "Mode",
    "NotFoundError", "Opener", "Options", "PermissionDeniedError", "Range",
    "ReadAheadSettings", "Readable",
    "Record", "Resource", "Result", "Store", "StoreFlag", "XattrType", "filemode",
    "iter_chunks", "serve",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(home, __name__)
    value = module if name == "filemode" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
