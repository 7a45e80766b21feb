"""A development plakar package of the azblob connectors, run from this checkout's venv.

The package's executable is a shell wrapper that execs the venv's
``plakar-azblob`` by its absolute path, so plakar runs the code under test
as installed (editable) in the venv. The self-contained PyInstaller package
is built by ``make package``; this one needs no build step.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from plakar_env import PlakarEnv

NAME = "azblob"
VERSION = "v0.0.1"
KINDS = ("importer", "exporter", "storage")


def entry_point() -> Path:
    """The venv's ``plakar-azblob`` script, next to the running Python."""
    exe = Path(sys.executable).parent / "plakar-azblob"
    if not exe.exists():
        raise RuntimeError(f"{exe} is missing: install the project in the venv (make venv)")
    return exe


def write_azblob_package(dest: Path, command: str = "") -> Path:
    """A package folder whose connectors all run ``plakar-azblob``; returns its manifest.

    ``command``: the shell words the wrapper execs (the venv's ``plakar-azblob``
    by default; bench/ab_plakar.py runs another tree's code)."""
    dest.mkdir(parents=True, exist_ok=True)
    wrapper = dest / "plakar-azblob"
    wrapper.write_text(f'#!/bin/sh\nexec {command or shlex.quote(str(entry_point()))} "$@"\n')
    wrapper.chmod(0o755)
    connectors = "".join(
        f"  - type: {kind}\n    protocols: [azblob]\n    class: object-storage\n"
        f"    subclass: azblob\n    executable: plakar-azblob\n    args: [{kind}]\n"
        for kind in KINDS)
    manifest = dest / "manifest.yaml"
    manifest.write_text(
        f"name: {NAME}\ndisplay_name: Azure Blob Storage (development)\n"
        "description: azblob connectors run from the project's venv (tests only)\n"
        f"api_version: v1.1.0\nconnectors:\n{connectors}")
    return manifest


def install_azblob(env: PlakarEnv, workdir: Path) -> Path:
    """Build the package with ``plakar pkg create`` and ``pkg add`` it to ``env``."""
    manifest = write_azblob_package(workdir)
    ptar = env.pkg_create(manifest, VERSION, workdir)
    assert ptar.name.startswith(f"{NAME}_{VERSION}_"), ptar.name
    env.run("pkg", "add", str(ptar))
    shown = env.run("pkg", "show").stdout
    assert f"{NAME}@{VERSION}" in shown, shown
    return ptar
