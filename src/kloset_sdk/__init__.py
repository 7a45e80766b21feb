"""Write Plakar (Kloset) connectors in Python.

A connector subclasses one of the three interfaces, and its program hands
them to :func:`main`; the SDK speaks plakar's gRPC plugin protocol on the
process's stdin and stdout. Everything a connector needs is here, at the top
level (``__all__``); the subpackages whose names start with ``_`` are the
SDK's runtime, which a connector never imports.

The interfaces:
    :class:`Importer` (a source; :class:`ReadAheadSettings`),
    :class:`Exporter` (a destination), :class:`Store` (a Kloset store;
    :class:`Resource`, :class:`StoreFlag`, :class:`Mode`, :class:`Range`),
    and :class:`Connector`, what the three have in common.
What they exchange with plakar:
    :class:`Record` (a file, directory, symlink, extended attribute or
    failure; :class:`FileInfo`, :class:`XattrType`, :data:`EPOCH`,
    :func:`from_ns`),
    :data:`Opener` and :data:`Readable` (content an importer gives),
    :class:`Result` (plakar's answer about a record),
    :class:`IncomingContent` (content plakar sends; :data:`CHUNK_SIZE`,
    :func:`iter_chunks`), :class:`Options` and :class:`LocationFlag`
    (what Init says and answers), :mod:`filemode` (Go ``fs.FileMode`` bits).
Errors plakar shows as they are:
    :class:`ConnectorError`, :class:`ConfigError`, :class:`NotFoundError`,
    :class:`AlreadyExistsError`, :class:`PermissionDeniedError`.
Starting:
    :func:`main` (a program of connectors, started through a fork server),
    :func:`serve` (one connector on stdio, in this process).

Names are imported on first use (PEP 562): a program that imports one name
loads only the module that defines it.
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
    from .entry import main, serve
    from .errors import (
        AlreadyExistsError,
        ConfigError,
        ConnectorError,
        NotFoundError,
        PermissionDeniedError,
    )
    from .exporter import Exporter
    from .importer import Importer, ReadAheadSettings
    from .options import LocationFlag, Options
    from .records import (
        EPOCH,
        FileInfo,
        Opener,
        Readable,
        Record,
        Result,
        XattrType,
        each_record,
        from_ns,
    )
    from .storage import Mode, Range, Resource, Store, StoreFlag

# Public name -> the module of the face defining it.
_HOMES = {
    "Connector": ".connector",
    "Importer": ".importer", "ReadAheadSettings": ".importer",
    "Exporter": ".exporter",
    "Mode": ".storage", "Range": ".storage", "Resource": ".storage", "Store": ".storage",
    "StoreFlag": ".storage",
    "EPOCH": ".records", "FileInfo": ".records", "Opener": ".records", "Readable": ".records",
    "Record": ".records", "Result": ".records", "XattrType": ".records", "from_ns": ".records",
    "each_record": ".records",
    "CHUNK_SIZE": ".content", "IncomingContent": ".content", "iter_chunks": ".content",
    "LocationFlag": ".options", "Options": ".options",
    "filemode": ".filemode",
    "AlreadyExistsError": ".errors", "ConfigError": ".errors", "ConnectorError": ".errors",
    "NotFoundError": ".errors", "PermissionDeniedError": ".errors",
    "main": ".entry", "serve": ".entry",
}

__all__ = [
    "CHUNK_SIZE", "EPOCH", "AlreadyExistsError", "ConfigError", "Connector", "ConnectorError",
    "Exporter", "FileInfo", "Importer", "IncomingContent", "LocationFlag", "Mode",
    "NotFoundError", "Opener", "Options", "PermissionDeniedError", "Range",
    "ReadAheadSettings", "Readable", "Record", "Resource", "Result", "Store", "StoreFlag",
    "XattrType", "each_record", "filemode", "from_ns", "iter_chunks", "main", "serve",
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
