"""A Python SDK for writing Plakar (Kloset) connectors.

A connector subclasses :class:`Importer`, :class:`Exporter` or :class:`Store`
and calls :func:`serve` from its executable; the SDK speaks plakar's gRPC
plugin protocol over the process's stdin/stdout.
"""

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
from .records import FileInfo, Opener, Readable, Record, Result, XattrType
from .serve import serve
from .storage import Mode, Range, Resource, Store, StoreFlag

__all__ = [
    "CHUNK_SIZE",
    "AlreadyExistsError",
    "ConfigError",
    "Connector",
    "ConnectorError",
    "Exporter",
    "FileInfo",
    "Importer",
    "IncomingContent",
    "LocationFlag",
    "Mode",
    "NotFoundError",
    "Opener",
    "Options",
    "PermissionDeniedError",
    "Range",
    "Readable",
    "Record",
    "Resource",
    "Result",
    "Store",
    "StoreFlag",
    "XattrType",
    "filemode",
    "iter_chunks",
    "serve",
]
