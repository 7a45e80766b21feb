"""Blob names and plakar paths.

A blob ``NAME`` is the plakar path ``/NAME``: with location
``azblob://container/a/b`` the importer's root is ``/a/b`` and blob
``a/b/x.txt`` is ``/a/b/x.txt``. The exporter puts the restored path
``/dir/file`` at blob ``a/b/dir/file``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kloset_sdk import ConnectorError

from .client import account_url
from .config import AzureConfig


def origin(cfg: AzureConfig) -> str:
    """Where the data lives, for ``plakar ls``: account host (and path) and container."""
    url = urlsplit(account_url(cfg))
    return f"{url.netloc}{url.path.rstrip('/')}/{cfg.container}"


def root(cfg: AzureConfig) -> str:
    return "/" + cfg.prefix


def listing_prefix(cfg: AzureConfig) -> str:
    """What every blob name under the location starts with: "" or "a/b/"."""
    return cfg.prefix + "/" if cfg.prefix else ""


def invalid_name(relative: str) -> str | None:
    """Why a blob name (relative to the location's prefix) cannot be a plakar path.

    A trailing ``/`` (a folder marker) is allowed; segments must not be
    empty, ``.`` or ``..``.
    """
    segments = relative.removesuffix("/").split("/") if relative else []
    if "" in segments:
        return "an empty path segment (\"//\", or a leading or trailing \"/\")"
    if "." in segments or ".." in segments:
        return "a \".\" or \"..\" path segment"
    return None


def blob_name(cfg: AzureConfig, pathname: str) -> str:
    """The blob that receives the restored path ``pathname`` (``/dir/file``)."""
    segments = [s for s in pathname.split("/") if s]
    if not segments:
        raise ConnectorError(f"cannot restore {pathname!r} as a blob: it names no file")
    if "." in segments or ".." in segments:
        raise ConnectorError(f"cannot restore {pathname!r}: a \".\" or \"..\" segment "
                             "would leave the destination prefix")
    return listing_prefix(cfg) + "/".join(segments)
