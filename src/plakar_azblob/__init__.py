"""Azure Blob Storage connectors for plakar, built on kloset_sdk."""

__version__ = "1.0.0"
