"""Azure Blob Storage connectors for plakar, built on kloset_sdk.

The three connectors first: :mod:`.source` (importer), :mod:`.storage` (a
Kloset store in a container), :mod:`.destination` (exporter), started by
:mod:`.__main__`. What they stand on, from the bottom up: :mod:`.clients`
(configuration, credentials, retries, the Azure SDK's clients, errors),
:mod:`.transfer` (listings, reads and uploads) and :mod:`.mapping` (blobs as
plakar's records and back, a store's blob names).
"""

from __future__ import annotations

import functools


@functools.cache
def _version() -> str:
    # importlib.metadata is slow to import: only the connectors need it, not
    # the launcher of a forked connector (see __main__).
    from importlib.metadata import PackageNotFoundError, version

    try:
        # The version is written once, in pyproject.toml.
        return version("plakar-azblob")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
