"""Turning connector exceptions into gRPC statuses plakar can show."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from .errors import (
    AlreadyExistsError,
    ConfigError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
)
from .rpc import Status

log = logging.getLogger("kloset_sdk")

_CODES: list[tuple[type[BaseException], Status]] = [
    (ConfigError, Status.INVALID_ARGUMENT),
    (NotFoundError, Status.NOT_FOUND),
    (AlreadyExistsError, Status.ALREADY_EXISTS),
    (PermissionDeniedError, Status.PERMISSION_DENIED),
    (FileNotFoundError, Status.NOT_FOUND),
    (FileExistsError, Status.ALREADY_EXISTS),
    (PermissionError, Status.PERMISSION_DENIED),
    (NotImplementedError, Status.UNIMPLEMENTED),
    (ValueError, Status.INVALID_ARGUMENT),
]


def message(exc: BaseException) -> str:
    """One line for the user: the exception's own text, or its kind when it has none."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ConnectorError) and text:
        return text
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def code(exc: BaseException) -> Status:
    for kind, status in _CODES:
        if isinstance(exc, kind):
            return status
    return Status.UNKNOWN


def abort(context: Any, exc: BaseException, rpc: str) -> NoReturn:
    """End the RPC with ``exc`` as a clear status; a traceback only at debug level."""
    text = message(exc)
    log.debug("%s failed: %s", rpc, text, exc_info=exc)
    if not isinstance(exc, ConnectorError):
        log.info("%s failed: %s", rpc, text)
    context.abort(code(exc), text)
    raise AssertionError("unreachable")  # context.abort always raises
