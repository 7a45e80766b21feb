from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from azurite import Azurite, start_azurite
from plakar_env import PlakarEnv


@pytest.fixture(scope="session", autouse=True)
def _private_runtime_dir() -> Iterator[Path]:
    """The connectors the tests start (directly or through plakar, whose
    environment has it) keep their fork servers (kloset_sdk._process.forkserver) in a
    private XDG_RUNTIME_DIR, shared by the whole session, and those are
    stopped at its end, like plakar's cache daemon: never the user's own,
    nor an installed package's."""
    from kloset_sdk._process import forkserver

    folder = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    folder.chmod(0o700)
    before = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(folder)
    try:
        yield folder
    finally:
        forkserver.stop_servers(None, str(folder / "kloset"))
        deadline = time.monotonic() + 10
        while list(folder.glob("kloset/*.sock")) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            del os.environ["XDG_RUNTIME_DIR"]
        else:
            os.environ["XDG_RUNTIME_DIR"] = before


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plakar() -> Iterator[PlakarEnv]:
    env = PlakarEnv()
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture
def azplakar(plakar: PlakarEnv, tmp_path_factory: pytest.TempPathFactory) -> PlakarEnv:
    """A PlakarEnv with the development azblob package (the venv's connectors) installed."""
    from azblob_package import install_azblob

    install_azblob(plakar, tmp_path_factory.mktemp("azblob-pkg"))
    return plakar
