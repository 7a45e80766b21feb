"""The listing benchmark's Go tools (bench/listing/): built once per source, and started.

``listing-service`` is a synthetic Azure Blob service answering List Blobs for
generated containers of up to millions of blobs with a chosen delay per page
(see its main.go); ``listing-driver`` plays plakar's side of an importer's
Import over the connector's pipes. Both are built with ``go build`` into
``.tools/bench-listing-<hash16>/``, ``<hash16>`` a hash of their sources
(``go.mod``, ``go.sum``, ``*.go``), so a machine builds each version once; a
lock file makes concurrent builds wait for each other, as for the Go package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from azurite import ACCOUNT, KEY
from go_package import BUILD_TIMEOUT, GoPackageError, _go, _locked, files_hash

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "bench" / "listing"
TOOLS = ("listing-service", "listing-driver")


def source_hash() -> str:
    """16 hex digits of SHA-256 over the tools' go.mod, go.sum and Go files."""
    files = sorted(p for p in SOURCE.rglob("*")
                   if p.is_file() and (p.suffix == ".go" or p.name in ("go.mod", "go.sum")))
    return files_hash(SOURCE, files)


def tools_dir() -> Path:
    """The folder of the built ``listing-service`` and ``listing-driver``."""
    final = ROOT / ".tools" / f"bench-listing-{source_hash()}"
    if all((final / t).exists() for t in TOOLS):
        return final
    with _locked(final.parent / f"{final.name}.lock"):
        if all((final / t).exists() for t in TOOLS):
            return final
        work = final.parent / f"{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            proc = subprocess.run(
                [_go(), "build", "-o", str(work) + "/", "./..."], cwd=SOURCE,
                env={**os.environ, "GOFLAGS": "-buildvcs=false"}, capture_output=True,
                text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise GoPackageError(f"go build of bench/listing failed ({proc.returncode}):"
                                     f"\n{proc.stderr[-4000:]}")
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


class ListingService:
    """A running ``listing-service`` on a free loopback port.

    Its containers are named ``hier-N`` (N blobs ``dNNNNN/fNNNNN``) or ``flat-N``
    (N blobs named by 32 hex digits); any account name and key are accepted."""

    def __init__(self, log: bool = False) -> None:
        argv = [str(tools_dir() / "listing-service"), *(["-log"] if log else [])]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "listening":
            self.process.kill()
            raise RuntimeError(f"listing-service did not start: {line}")
        self.address = line[1]
        self.endpoint = f"http://{self.address}/{ACCOUNT}"
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.endpoint};")

    def _control(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(f"http://{self.address}/_bench/{path}", method=method)
        with urllib.request.urlopen(request, timeout=600) as resp:
            return bytes(resp.read())

    def reset(self, delay_ms: float | None = None, prepare: str | None = None) -> None:
        """Zero the request counts; set the delay per page; generate a container's names
        now (``prepare``) rather than during the first listing."""
        query = []
        if delay_ms is not None:
            query.append(f"delay_ms={delay_ms:g}")
        if prepare:
            query.append(f"prepare={prepare}")
        self._control("reset?" + "&".join(query), "POST")

    def stats(self) -> dict[str, int]:
        """``list`` (List Blobs pages answered), ``other`` requests, ``max_in_flight``
        (most List Blobs served at once) since the last reset."""
        return {k: int(v) for k, v in json.loads(self._control("stats")).items()}

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def service_for_tests() -> Iterator[ListingService]:
    """A module fixture's body: a running service (the test skipped without Go), stopped
    after the module."""
    import pytest

    try:
        svc = ListingService()
    except GoPackageError as exc:
        pytest.skip(f"Go is needed to build the listing service: {exc}")
    yield svc
    svc.stop()
