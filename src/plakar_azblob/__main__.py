"""``plakar-azblob importer|exporter|storage``: serve one connector on stdio."""

from __future__ import annotations

import sys

from kloset_sdk import serve

USAGE = "usage: plakar-azblob importer|exporter|storage"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ("importer", "exporter", "storage"):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    kind = args[0]
    # Imported on demand: each process loads only the connector it serves.
    if kind == "importer":
        from .source import AzureImporter as factory
    elif kind == "exporter":
        from .destination import AzureExporter as factory  # type: ignore[assignment]
    else:
        from .storage import AzureStore as factory  # type: ignore[assignment]
    serve(kind, factory)


if __name__ == "__main__":
    main()
