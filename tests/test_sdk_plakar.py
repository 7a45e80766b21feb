"""The SDK proven through the real plakar: a pydir package installed with `plakar pkg add`."""

from __future__ import annotations

from pathlib import Path

import pytest
from plakar_env import PlakarEnv, snapshot_id, write_pydir_package
from tree_compare import make_sample_tree, snapshot

pytestmark = pytest.mark.plakar


@pytest.fixture
def pydir(plakar: PlakarEnv, tmp_path: Path) -> PlakarEnv:
    manifest = write_pydir_package(tmp_path / "pkg")
    ptar = plakar.pkg_create(manifest, "v0.1.0", tmp_path / "pkg")
    assert ptar.name.startswith("pydir_v0.1.0_")
    plakar.run("pkg", "add", str(ptar))
    assert "pydir@v0.1.0" in plakar.run("pkg", "show").stdout
    return plakar




def test_backup_from_sdk_importer_and_restore_through_sdk_exporter(
    pydir: PlakarEnv, tmp_path: Path
) -> None:
    src, store = tmp_path / "src", tmp_path / "store"
    src.mkdir()
    make_sample_tree(src)
    pydir.run("at", str(store), "create")
    snap = snapshot_id(pydir.run("at", str(store), "backup", f"pydir://{src}"))
    listing = pydir.run("at", str(store), "ls").stdout
    assert snap in listing and str(src) in listing

    # plakar's own exporter writes what our importer produced...
    pydir.run("at", str(store), "restore", "-to", str(tmp_path / "plain"), snap)
    assert snapshot(tmp_path / "plain") == snapshot(src)
    # ...and our exporter writes the same.
    pydir.run("at", str(store), "restore", "-to", f"pydir://{tmp_path / 'ours'}", snap)
    assert snapshot(tmp_path / "ours") == snapshot(src)

    # An unchanged second backup opens nothing: content stays lazy.
    out = pydir.run("at", str(store), "backup", f"pydir://{src}")
    assert "backup completed" in out.stdout + out.stderr


def test_sdk_store_create_backup_check_restore(pydir: PlakarEnv, tmp_path: Path) -> None:
    src, store = tmp_path / "src", tmp_path / "kstore"
    src.mkdir()
    make_sample_tree(src)
    at = f"pydir://{store}"
    pydir.run("at", at, "create")
    again = pydir.run("at", at, "create", ok=False)
    assert again.returncode != 0 and "already exists" in again.stdout + again.stderr
    snap = snapshot_id(pydir.run("at", at, "backup", str(src)))
    assert (store / "CONFIG").is_file() and any((store / "packfile").iterdir())
    check = pydir.run("at", at, "check")
    assert "check completed without errors" in check.stdout + check.stderr
    pydir.run("at", at, "restore", "-to", str(tmp_path / "restored"), snap)
    assert snapshot(tmp_path / "restored") == snapshot(src)


def test_bad_config_is_one_clear_line(pydir: PlakarEnv, tmp_path: Path) -> None:
    pydir.run("at", str(tmp_path / "s"), "create")
    proc = pydir.run("at", str(tmp_path / "s"), "backup", f"pydir://{tmp_path}/missing", ok=False)
    assert proc.returncode != 0
    assert f"{tmp_path}/missing is not a directory" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
