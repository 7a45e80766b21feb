from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from azurite import Azurite, start_azurite
from plakar_env import PlakarEnv


@pytest.fixture(scope="session", autouse=True)
def _stop_fork_servers() -> Iterator[None]:
    """The development package's connectors start a fork server (kloset_sdk.forkserver),
    shared by the whole session: stopped at its end, like plakar's cache daemon."""
    yield
    from kloset_sdk import forkserver

    forkserver.stop_servers("plakar-azblob")


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
