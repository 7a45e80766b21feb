"""Errors a connector raises; the SDK turns each into a gRPC status.

plakar shows the status message to the user as it is, so every message is
one plain sentence without secrets. CANCELLED and UNAVAILABLE are avoided on
purpose: plakar rewrites those into "context canceled" / "I/O error".
"""

from __future__ import annotations


class ConnectorError(Exception):
    """A failure with a message fit for the user."""


class ConfigError(ConnectorError):
    """The connector's configuration is wrong (bad or unknown option)."""


class NotFoundError(ConnectorError):
    """The object, record or resource asked for does not exist."""


class AlreadyExistsError(ConnectorError):
    """The object to create exists already."""


class PermissionDeniedError(ConnectorError):
    """The credentials do not allow the operation."""
