"""The example connector (examples/localdir) packaged by ``plakar pkg create`` from its own
manifest, installed, and run through the real plakar: the proof that kloset_sdk's top
level is enough to write a connector."""

from __future__ import annotations

import ast
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from plakar_env import PlakarEnv, output, snapshot_id
from tree_compare import make_sample_tree, snapshot

import kloset_sdk

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "localdir"
SOURCE = EXAMPLE / "localdir.py"


def test_the_example_uses_the_sdks_top_level_only() -> None:
    tree = ast.parse(SOURCE.read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "kloset_sdk" in modules
    assert not [m for m in modules if m.startswith("kloset_sdk.")]
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "sdk"}
    assert used and used <= set(kloset_sdk.__all__), used - set(kloset_sdk.__all__)


@pytest.fixture
def localdir(tmp_path: Path) -> Iterator[PlakarEnv]:
    """A plakar home with the example's package installed. plakar runs the example with
    the ``python3`` of its PATH: this venv's, which has kloset_sdk."""
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env = PlakarEnv({"PATH": path})
    try:
        package = tmp_path / "package"
        shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("__pycache__"))
        ptar = env.pkg_create(package / "manifest.yaml", "v1.0.0", package)
        env.run("pkg", "add", str(ptar))
        assert "localdir@v1.0.0" in env.run("pkg", "show").stdout
        yield env
    finally:
        env.stop()


def _times(root: Path) -> dict[str, int]:
    """The modification time (ns, rounded up to plakar's microseconds) of every directory
    and symlink under ``root`` (tree_compare.snapshot has the files')."""
    found = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if path.is_symlink() or path.is_dir():
            found[str(path.relative_to(root))] = -(-st.st_mtime_ns // 1000)
    return found


@pytest.mark.plakar
def test_backup_and_restore_through_plakar(localdir: PlakarEnv, tmp_path: Path) -> None:
    src, store = tmp_path / "src", tmp_path / "store"
    src.mkdir()
    make_sample_tree(src)  # files (modes, times, empty, 5 MiB), directories, a symlink
    for i, folder in enumerate(["docs/deep/er", "docs/deep", "empty-dir", "docs", "."]):
        os.utime(src / folder, ns=(1_400_000_000_000_000_000 + i * 1000,) * 2)
    os.utime(src / "link-to-hello", ns=(1_300_000_000_000_000_000,) * 2, follow_symlinks=False)
    localdir.run("at", str(store), "create")
    snap = snapshot_id(localdir.run("at", str(store), "backup", f"localdir://{src}"))

    # plakar's own exporter writes what the example's importer produced...
    localdir.run("at", str(store), "restore", "-to", str(tmp_path / "plain"), snap)
    assert snapshot(tmp_path / "plain") == snapshot(src)
    # ...and the example's exporter writes it all back, directory times included.
    out = tmp_path / "restored"
    localdir.run("at", str(store), "restore", "-to", f"localdir://{out}", snap)
    assert snapshot(out) == snapshot(src)
    assert _times(out) == _times(src)
    assert not list(out.rglob(".*.partial"))

    bad = localdir.run("at", str(store), "backup", f"localdir://{tmp_path}/missing", ok=False)
    assert bad.returncode != 0 and f"{tmp_path}/missing is not a directory" in output(bad)
    assert "Traceback" not in output(bad)
