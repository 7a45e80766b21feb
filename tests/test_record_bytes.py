"""The importer's records, byte for byte: what bench/percord.py's listing (20 000 blobs
in Azure's XML shape: plain blobs, user metadata, rclone and azcopy conventions,
content settings of their own, tiers, append blobs, folder markers) becomes on the
wire must stay what it was when the per-record CPU work (issue 19) started: a
change that makes the importer cheaper must not change a byte it sends.

The digest was taken with the code of main at 481e3d7, before that work."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from kloset_sdk import Options
from kloset_sdk._services.common import methods
from kloset_sdk._services.importer import ImporterService
from kloset_sdk._wire.rpc import Many
from plakar_azblob.source import AzureImporter
from plakar_azblob.transfer.direct import DirectReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import percord

BLOBS = 20_000
RECORDS = 30_701
DIGEST = "326a364eb2a4f09ab176993fcd4e3fae7235a801b5107c4d5ccf6510a6038689"


class _Context:
    def abort(self, code: Any, details: str) -> None:
        raise AssertionError(details)


def import_bytes(blobs: int) -> tuple[int, str]:
    """(records, SHA-256 of every ImportResponse as the Import method serialises it)."""
    listed = DirectReader.list_page
    percord.patch_listing(percord.make_pages(blobs))
    try:
        return _scanned_bytes()
    finally:
        DirectReader.list_page = listed  # type: ignore[method-assign]


def _scanned_bytes() -> tuple[int, str]:
    service = ImporterService(AzureImporter)
    importer = AzureImporter("azblob", percord.CONFIG, Options())
    service._connector = importer
    serialize = methods("importer.Importer", service)["/importer.Importer/Import"].serialize
    digest = hashlib.sha256()
    records = 0
    try:
        for sent in service.Import(iter(()), _Context()):
            # A batch (Many) goes out as its messages one after the other.
            for response in sent if isinstance(sent, Many) else (sent,):
                data = response if serialize is None else serialize(response)
                digest.update(len(data).to_bytes(4, "big") + data)
                records += 1
    finally:
        importer.close()
    return records - 1, digest.hexdigest()  # the last response is "finished"


def test_records_are_the_same_bytes() -> None:
    assert import_bytes(BLOBS) == (RECORDS, DIGEST)


if __name__ == "__main__":
    print(*import_bytes(BLOBS))
