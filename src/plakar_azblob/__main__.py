"""``plakar-azblob importer|exporter|storage``: serve one connector on stdio.

Started by :func:`kloset_sdk.main`, through a fork server when one runs:
nothing of the connectors is imported until one is served in this process.
``plakar-azblob fork-server SOCKET`` is that server (started by a connector,
never by hand); ``plakar-azblob stop-fork-server`` stops this user's servers.
"""

from __future__ import annotations

import sys

import kloset_sdk

APP = "plakar-azblob"
XML_CHECK_ARG = "check-xml"  # .transfer.wellformed.HELPER_ARG
# Where each connector is imported from, by the process that serves it only.
CONNECTORS = {
    "importer": "plakar_azblob.source:AzureImporter",
    "exporter": "plakar_azblob.destination:AzureExporter",
    "storage": "plakar_azblob.storage:AzureStore",
}


def preload() -> None:
    """What the fork server loads once for every connector it forks, besides the
    connectors: what the Azure SDK loads at its first request and a client of a
    made-up account, the content type table, the package's version."""
    from . import _version
    from .mapping import attributes
    from .transfer import direct

    direct.preload()
    attributes.default_content_type("x")  # builds the type table once
    _version()


def main() -> None:
    if sys.argv[1:] == [XML_CHECK_ARG]:
        # The frozen build started as a listing's page checker: imported only then
        # (a connector's start does not pay for it).
        from .transfer import wellformed

        wellformed.serve()
        return
    kloset_sdk.main(APP, CONNECTORS, preload=preload)


if __name__ == "__main__":
    main()
