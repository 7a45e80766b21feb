"""Azure Blob Storage connectors for plakar, built on kloset_sdk."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The version is written once, in pyproject.toml.
    __version__ = version("plakar-azblob")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
