r"""Blob names and plakar paths.

A blob ``NAME`` is the plakar path ``/NAME``: with location
``azblob://container/a/b`` the importer's root is ``/a/b`` and blob
``a/b/x.txt`` is ``/a/b/x.txt``. The exporter puts the restored path
``/dir/file`` at blob ``a/b/dir/file``.

The same rule keeps both directions safe (:func:`unsafe_name`). Azure Blob
Storage (and Azurite) store a backslash in a blob name as a forward slash:
a file ``dir\file`` becomes blob ``dir/file``, and ``a\..\b`` would become
``a/../b``. So ``\`` is a separator here too. A name is refused if it holds
a NUL, an empty segment (``//``, ``\\``, or a leading or trailing
separator), or a ``.`` or ``..`` segment. Other names of dots (``...``)
are ordinary names to Azure and to POSIX file systems: they are kept, so a
backup loses no blob. The exporter writes a safe path with its
backslashes already turned into slashes, so the blob it names is the blob
that exists; a refused record fails alone and nothing is written for it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from kloset_sdk import ConnectorError

from ..clients.config import AzureConfig
from ..clients.factory import account_url

# Azure stores a backslash in a blob name as "/": both separate segments.
_SEPARATORS = re.compile(r"[/\\]")


def origin(cfg: AzureConfig) -> str:
    """Where the data lives, for ``plakar ls``: account host (and path) and container."""
    url = urlsplit(account_url(cfg))
    return f"{url.netloc}{url.path.rstrip('/')}/{cfg.container}"


def root(cfg: AzureConfig) -> str:
    return "/" + cfg.prefix


def listing_prefix(cfg: AzureConfig) -> str:
    """What every blob name under the location starts with: "" or "a/b/"."""
    return cfg.prefix + "/" if cfg.prefix else ""


def unsafe_name(name: str) -> str | None:
    """Why the relative name ``a/b/c`` is unsafe as a path (see the module docstring), or None."""
    if "\0" in name:
        return "a NUL character"
    for segment in _SEPARATORS.split(name):
        if not segment:
            return ("an empty path segment (two separators in a row, or a leading or "
                    "trailing one; \"\\\" counts as \"/\")")
        if segment in (".", ".."):
            return f"a \"{segment}\" path segment"
    return None


def invalid_name(relative: str) -> str | None:
    """Why a blob name (relative to the location's prefix) cannot be a plakar path.

    A trailing ``/`` (a folder marker) is allowed; otherwise :func:`unsafe_name`.
    """
    return unsafe_name(relative.removesuffix("/")) if relative else None


def blob_name(cfg: AzureConfig, pathname: str) -> str:
    """The blob that receives the restored path ``pathname`` (``/dir/file``).

    Raises ConnectorError for a path that names no file or is unsafe: it is
    never written, not even under another name.
    """
    relative = pathname.removeprefix("/")
    if not relative:
        raise ConnectorError(f"cannot restore {pathname!r} as a blob: it names no file")
    why = unsafe_name(relative)
    if why is not None:
        raise ConnectorError(f"cannot restore {pathname!r}: the path has {why} (refused so "
                             "that nothing is written outside the destination prefix)")
    return listing_prefix(cfg) + relative.replace("\\", "/")
