"""Key ranges through the real plakar: what is backed up does not depend on them.

Azurite's listing pages are forced small (``maxresults`` added by a proxy, under
a SAS that does not sign it), so that a few hundred blobs make dozens of
pages and ranges; the same container is backed up with ranges
(``list_concurrency=4``) and one page after another (``list_concurrency=1``),
and both snapshots must hold every blob, with its bytes. A store kept in a
container is checked and listed the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from azblob_helpers import new_container, pk, sas
from azurite import Azurite
from fault_proxy import FaultProxy, pages_of
from plakar_env import PlakarEnv, snapshot_id

pytestmark = [pytest.mark.plakar, pytest.mark.azurite]


def names() -> list[str]:
    found = [f"logs/2026/{m:02d}/{d:02d}/app.log" for m in range(1, 5) for d in range(1, 29, 3)]
    found += [f"hash/{hashlib.sha1(str(i).encode()).hexdigest()}" for i in range(90)]
    found += [f"p/ab{s}" for s in ("", "c", "-c", "~", "é", "日本", " x")]
    found += [f"deep/{'/'.join('abc')}/{i:03d}" for i in range(40)]
    found += [f"é/日本/{i}.txt" for i in range(30)]
    return found


def test_a_backup_lists_the_same_blobs_with_and_without_key_ranges(
        azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path) -> None:
    container = new_container(azurite, "ranges")
    content = {name: hashlib.sha256(name.encode()).digest() * 3 for name in names()}
    for name, data in content.items():
        container.upload_blob(name, data)
    store = str(tmp_path / "store")
    pk(azplakar, "at", store, "create")
    token = sas(container, read=True, list=True)
    with FaultProxy(azurite.port, rewrite=pages_of(7)) as proxy:
        conn = f"BlobEndpoint={proxy.endpoint('devstoreaccount1')};SharedAccessSignature={token}"
        trees = {}
        for concurrency in (4, 1):
            before = len(proxy.seen)
            pk(azplakar, "source", "add", f"src{concurrency}",
               f"azblob://{container.container_name}", f"connection_string={conn}",
               f"list_concurrency={concurrency}")
            snap = snapshot_id(pk(azplakar, "at", store, "backup", f"@src{concurrency}"))
            lists = [s for s in proxy.seen[before:] if s.is_listing]
            starts = [s for s in lists if "startFrom=" in s.target]
            if concurrency > 1:
                assert len(starts) >= 5, "the listing was not cut into key ranges"
            else:
                assert not starts
            assert len(lists) > 2 * len(content) / 7, "pages were not forced small"
            out = tmp_path / f"restored{concurrency}"
            pk(azplakar, "at", store, "restore", "-to", str(out), snap)
            trees[concurrency] = {str(p.relative_to(out)): p.read_bytes()
                                  for p in out.rglob("*") if p.is_file()}
    assert trees[4] == trees[1] == content


def test_a_store_listed_in_key_ranges_checks_and_lists(
        azplakar: PlakarEnv, azurite: Azurite, tmp_path: Path) -> None:
    container = new_container(azurite, "rangestore")
    token = sas(container, read=True, write=True, list=True, delete=True, add=True,
                create=True)
    data = tmp_path / "data"
    for i in range(12):
        (data / f"d{i}").mkdir(parents=True)
        (data / f"d{i}" / "f.bin").write_bytes(hashlib.sha512(str(i).encode()).digest() * 999)
    # Pages of one name: a store's listings (eight states, a few packfiles, locks) are
    # then long enough to be cut into ranges whatever their random names (with two
    # names a page, the first page's two names could leave no room for a cut).
    with FaultProxy(azurite.port, rewrite=pages_of(1)) as proxy:
        conn = f"BlobEndpoint={proxy.endpoint('devstoreaccount1')};SharedAccessSignature={token}"
        pk(azplakar, "store", "add", "rs", f"azblob://{container.container_name}",
           f"connection_string={conn}", "list_concurrency=4")
        pk(azplakar, "at", "@rs", "create")
        snaps = {snapshot_id(pk(azplakar, "at", "@rs", "backup", "-tag", f"t{i}", str(data)))
                 for i in range(8)}
        listed = pk(azplakar, "at", "@rs", "ls").stdout
        assert all(s[:8] in listed for s in snaps)
        pk(azplakar, "at", "@rs", "check")
        assert any("startFrom=" in s.target for s in proxy.seen if s.is_listing), \
            "\n".join(s.target[40:100] for s in proxy.seen if s.is_listing)
