r"""Blob names and plakar paths.

A blob ``NAME`` is the plakar path ``/NAME``: with location
``azblob://container/a/b`` the importer's root is ``/a/b`` and blob
``a/b/x.txt`` is ``/a/b/x.txt``. The exporter puts the restored path
``/dir/file`` at blob ``a/b/dir/file``.

The same rule keeps both directions safe (:func:`unsafe_name`): a name is
refused if it holds a NUL, an empty ``/`` segment (``//``, or a leading or
trailing ``/``), or a piece made only of dots (``.``, ``..``, ``...``) when
split at ``/`` *and* at ``\``. A backslash is an ordinary character of a
blob name and of a Linux file name, so ``dir\file`` is kept as it is; but a
consumer that reads ``\`` as a separator (Windows, some tools and
services) would turn ``..\x`` into a step out of the destination, and
Windows drops trailing dots (``...`` may become ``..``), so those are
refused. A restored name therefore always stays under the destination
prefix, whoever reads it later; a refused record fails alone.
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


def unsafe_name(name: str) -> str | None:
    """Why the relative name ``a/b/c`` is unsafe as a path (see the module docstring), or None."""
    if "\0" in name:
        return "a NUL character"
    segments = name.split("/")
    if "" in segments:
        return "an empty path segment (\"//\", or a leading or trailing \"/\")"
    for segment in segments:
        for piece in segment.split("\\"):
            if piece and piece.strip(".") == "":
                if piece != segment:
                    return f"a \"{piece}\" path segment once \"\\\" is read as a separator"
                return f"a \"{piece}\" path segment"
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
    return listing_prefix(cfg) + relative
