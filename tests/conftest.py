from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from azurite import Azurite, start_azurite
from plakar_env import PlakarEnv


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
