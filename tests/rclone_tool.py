"""The real rclone, as users run it, against a test's Azurite.

rclone is built by ``make rclone`` (part of ``make tools``) from the Go module
proxy into ``.tools/rclone-<version>/`` once per machine; ``$RCLONE_BIN``
names another one. It runs with an in-memory configuration (``--config
/dev/null``): one ``azureblob`` remote, ``az:``, given by environment
variables (``RCLONE_CONFIG_AZ_*``: account, key, endpoint), and a private
HOME, so neither a user's rclone.conf nor their caches are read or written.

A test that needs rclone calls :func:`rclone_bin`, which skips it with the
reason (Go missing, or rclone not built) where rclone cannot be had.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azurite import ACCOUNT, KEY, Azurite

ROOT = Path(__file__).resolve().parent.parent
REMOTE = "az"
TIMEOUT = 300  # seconds, for any single rclone command


def rclone_bin() -> str:
    """The rclone to run: ``$RCLONE_BIN``, else the newest one ``make rclone`` built;
    the test is skipped, with the reason, if there is none."""
    found = os.environ.get("RCLONE_BIN", "")
    if not found or not Path(found).is_file():
        built = sorted((ROOT / ".tools").glob("rclone-*/rclone"))
        found = str(built[-1]) if built else ""
    if found:
        return found
    if shutil.which("go") is None:
        pytest.skip("rclone is not built and Go is not installed to build it (`make rclone`)")
    pytest.skip("rclone is not built: run `make rclone` (Go and the module proxy)")


@dataclass
class Rclone:
    """rclone with one remote, ``az:``, on ``azurite``'s development account."""

    azurite: Azurite
    bin: str = field(default_factory=rclone_bin)
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rclone-")))

    def env(self) -> dict[str, str]:
        prefix = f"RCLONE_CONFIG_{REMOTE.upper()}_"
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "TZ": os.environ.get("TZ", "UTC"),
            prefix + "TYPE": "azureblob",
            prefix + "ACCOUNT": ACCOUNT,
            prefix + "KEY": KEY,
            prefix + "ENDPOINT": self.azurite.endpoint,
        }

    def run(self, *args: str, ok: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.bin, "--config", os.devnull, *args],
                              env={**self.env(), **(env or {})}, capture_output=True,
                              text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        if ok and proc.returncode != 0:
            raise AssertionError(f"rclone {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"--- stdout\n{proc.stdout[-4000:]}\n"
                                 f"--- stderr\n{proc.stderr[-4000:]}")
        return proc

    @staticmethod
    def remote(container: str, path: str = "") -> str:
        return f"{REMOTE}:{container}" + (f"/{path}" if path else "")

    def lsl(self, where: str) -> dict[str, tuple[int, str]]:
        """``rclone lsl``: path -> (size, modification time as rclone prints it,
        to the nanosecond)."""
        found = {}
        for line in self.run("lsl", where).stdout.splitlines():
            size, day, clock, name = line.strip().split(" ", 3)
            found[name] = (int(size), f"{day} {clock}")
        return found

    def lsjson(self, where: str, *flags: str) -> dict[str, dict[str, Any]]:
        """``rclone lsjson -R`` (``-M`` among ``flags``: with metadata): path -> entry."""
        entries = json.loads(self.run("lsjson", "-R", *flags, where).stdout)
        return {entry["Path"]: entry for entry in entries}

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
