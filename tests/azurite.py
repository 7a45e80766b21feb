"""Start and stop a private Azurite blob service for tests.

In memory by default; with ``location`` its data lives in that folder, so
that it can be stopped and started again (``restart_azurite``) on the same
port with the same blobs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's fixed, public development key (not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def azurite_bin() -> str:
    default = ROOT / ".tools/azurite/node_modules/.bin/azurite-blob"
    found = os.environ.get("AZURITE_BIN") or str(default)
    if not Path(found).exists():
        found = shutil.which("azurite-blob") or found
    return found


@dataclass
class Azurite:
    port: int
    process: subprocess.Popen[bytes]
    location: Path | None = None  # the data folder (None: in memory)
    scheme: str = "http"  # https when started with a certificate (--cert, --key)

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};"
                f"AccountKey={KEY};BlobEndpoint={self.endpoint};")

    def stop(self, grace: float = 1) -> None:
        """Stop the whole process group, waiting ``grace`` seconds for it to save its data."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_azurite(debug_log: Path | None = None, extra_args: Sequence[str] = (), *,
                  port: int | None = None, location: Path | None = None) -> Azurite:
    """Start Azurite on ``port`` (a free one by default), in memory or in ``location``."""
    port = port or free_port()
    storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    args = [azurite_bin(), *storage, "--blobHost", "127.0.0.1",
            "--blobPort", str(port), "--skipApiVersionCheck", "--loose", "--silent",
            *extra_args]
    if debug_log is not None:
        args += ["--debug", str(debug_log)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"azurite exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Azurite(port, proc, location, "https" if "--cert" in extra_args else "http")
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("azurite did not start within 30 s")


def restart_azurite(stopped: Azurite) -> Azurite:
    """Start Azurite again on the port and data folder of ``stopped``."""
    assert stopped.process.poll() is not None, "stop it first"
    return start_azurite(port=stopped.port, location=stopped.location)
