"""Datasets and helpers shared by the end-to-end tests (plakar + Azurite).

``pk`` runs a plakar command with a bounded time; ``fill_tricky`` uploads
the tricky dataset (awkward names, properties, a 9 MiB blob read in several
ranges, folder markers); ``expected_tree`` is what a restore of a container
must give on disk and ``restored_tree`` what it gave; ``blob_listing`` is
everything that shows a write in a container (names, sizes, ETags).
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    generate_container_sas,
)
from azurite import ACCOUNT, KEY, Azurite
from plakar_env import PlakarEnv

MiB = 1024 * 1024
TIMEOUT = 120  # seconds, for any single plakar command

LONG_NAME = "long/" + "/".join(["d" * 99] * 10) + "/" + "f" * 19  # 1024 characters
SPECIAL = "my dir/sp ace #hash ?q %25 +plus &amp;.txt"
BIG = "big/multi.bin"
PROPS = "props/plain.txt"
PROPS_SETTINGS = ContentSettings(
    content_type="text/plain; charset=utf-8", content_language="fr-FR",
    cache_control="max-age=60", content_disposition='attachment; filename="plain.txt"')
PROPS_METADATA = {"owner": "alice", "purpose": "plakar-e2e"}

# The tricky dataset: blob name -> content (markers and folders come apart).
TRICKY: dict[str, bytes] = {
    PROPS: b"hello, properties\n",
    "empty.bin": b"",
    "ünïcødé/日本語 ファイル.txt": "こんにちは".encode(),
    "emoji 😀.txt": b"smile",
    SPECIAL: b"special characters",
    "my dir/sub/nested.bin": b"\x00\x01" * 500,
    LONG_NAME: b"long",
    "markers/with-kids/kid.txt": b"kid",
    "markers/hdi/child.txt": b"child",
}
MARKERS = ["markers/empty-dir/", "markers/with-kids/"]  # 0-byte "x/" blobs
FOLDERS = ["markers/hdi"]  # 0-byte blobs with hdi_isfolder=true


def pk(env: PlakarEnv, *args: str, ok: bool = True) -> CompletedProcess[str]:
    return env.run(*args, ok=ok, timeout=TIMEOUT)




def service(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def new_container(azurite: Azurite, kind: str, **kwargs: Any) -> ContainerClient:
    return service(azurite).create_container(f"{kind}-{uuid.uuid4().hex[:10]}", **kwargs)


def blob_bytes(container: ContainerClient) -> dict[str, bytes]:
    return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}


def fill_tricky(container: ContainerClient) -> bytes:
    """Upload the tricky dataset; returns the big blob's content."""
    for name, data in TRICKY.items():
        container.upload_blob(name, data)
    props = container.get_blob_client(PROPS)
    props.set_http_headers(PROPS_SETTINGS)
    props.set_blob_metadata(PROPS_METADATA)
    big = os.urandom(9 * MiB + 7)  # several 4 MiB ranges, many 1 MiB chunks
    container.get_blob_client(BIG).upload_blob(big, max_concurrency=4)
    for name in MARKERS:
        container.upload_blob(name, b"")
    for name in FOLDERS:
        container.upload_blob(name, b"", metadata={"hdi_isfolder": "true"})
    return big


def is_dir_blob(name: str) -> bool:
    return name.endswith("/") or name in FOLDERS


def expected_tree(container: ContainerClient, prefix: str = "") -> dict[str, tuple[Any, ...]]:
    """What a restore of ``container`` (under ``prefix``) must give, by relative path.

    Files: 0644, Last-Modified, bytes. Directories: 0755, dated by the newest
    blob inside them (their own marker included).
    """
    start = prefix + "/" if prefix else ""
    blobs = [b for b in container.list_blobs(name_starts_with=start or None)]
    tree: dict[str, tuple[Any, ...]] = {}
    dirs: dict[str, datetime] = {}
    for b in blobs:
        rel = b.name[len(start):]
        stamp = b.last_modified
        parts = rel.rstrip("/").split("/")
        if is_dir_blob(b.name):
            dir_parts = parts
        else:
            data = container.download_blob(b.name).readall()
            tree[rel] = ("file", 0o644, int(stamp.timestamp()), data)
            dir_parts = parts[:-1]
        for i in range(1, len(dir_parts) + 1):
            d = "/".join(dir_parts[:i])
            dirs[d] = max(dirs.get(d, stamp), stamp)
    for d, stamp in dirs.items():
        tree[d] = ("dir", 0o755, int(stamp.timestamp()))
    return tree


def restored_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    tree: dict[str, tuple[Any, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_dir():
                tree[rel] = ("dir", st.st_mode & 0o7777, int(st.st_mtime))
            else:
                assert path.is_file() and not path.is_symlink(), rel
                assert st.st_mtime_ns % 1_000_000_000 == 0, f"{rel}: sub-second time"
                tree[rel] = ("file", st.st_mode & 0o7777, int(st.st_mtime), path.read_bytes())
    return tree


def sas(container: ContainerClient, **perms: bool) -> str:
    return generate_container_sas(
        ACCOUNT, container.container_name, account_key=KEY,
        permission=ContainerSasPermissions(**perms),
        expiry=datetime.now(UTC) + timedelta(hours=1))


def blob_listing(container: ContainerClient) -> dict[str, tuple[int, str]]:
    """Every blob of the container, committed ones only: name -> (size, ETag)."""
    return {b.name: (int(b.size), str(b.etag)) for b in container.list_blobs()}
