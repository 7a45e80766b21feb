"""Run the real plakar in private HOME/XDG folders, and package test connectors for it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "plakar-azblob-tests"


def plakar_bin() -> str:
    found = os.environ.get("PLAKAR_BIN", "")
    if not found:
        built = sorted((ROOT / ".tools").glob("plakar-*/bin/plakar"))
        found = str(built[-1]) if built else ""
    if not found or not Path(found).exists():
        raise RuntimeError("plakar is not built: run `make plakar`")
    return found


def output(proc: subprocess.CompletedProcess[str]) -> str:
    """Everything a plakar command printed (it reports on both streams)."""
    return proc.stdout + proc.stderr


def snapshot_id(proc: subprocess.CompletedProcess[str]) -> str:
    """The short ID of the snapshot a ``plakar backup`` made."""
    found = re.findall(r"^([0-9a-f]{8}): backup completed", output(proc), re.MULTILINE)
    assert found, output(proc)
    return str(found[-1])


def _processes_of(folder: Path, home: Path) -> list[int]:
    """PIDs whose command line mentions ``folder`` or whose environment has HOME=``home``.

    The environment finds what plakar started whatever its command line (a
    development package's plugins run from the venv, not the package folder).
    """
    found = []
    marker = f"HOME={home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if str(folder).encode() in cmdline \
                    or marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class PlakarEnv:
    """A plakar with its own HOME, XDG folders and cache daemon."""

    def __init__(self, extra_env: Mapping[str, str] | None = None) -> None:
        # Short path: plakar's cache daemon listens on a Unix socket in it.
        self.root = Path(tempfile.mkdtemp(prefix="pk-", dir="/tmp"))
        self.home = self.root / "home"
        self.cache = self.root / "cache"
        for d in (self.home, self.cache, self.root / "config", self.root / "data"):
            d.mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CACHE_HOME": str(self.cache),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "data"),
            "PLAKAR_PASSPHRASE": PASSPHRASE,
            "TMPDIR": str(self.root),
            # The connectors' log level, when a developer asks for it, and
            # where their fork servers live (the test session's own folder).
            **{k: os.environ[k] for k in ("KLOSET_LOG", "XDG_RUNTIME_DIR") if k in os.environ},
            **(extra_env or {}),
        }
        self.bin = plakar_bin()
        self.run("-disable-security-check")

    def run(self, *args: str, ok: bool = True, timeout: float = 600,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.bin, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd or self.root, stdin=subprocess.DEVNULL)
        if ok and proc.returncode != 0:
            raise AssertionError(
                f"plakar {' '.join(args)} failed ({proc.returncode}):\n"
                f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
        return proc

    def pkg_create(self, manifest: Path, version: str, out_dir: Path) -> Path:
        self.run("pkg", "create", str(manifest), version, cwd=out_dir)
        found = sorted(out_dir.glob(f"*_{version}_*.ptar"))
        assert len(found) == 1, found
        return found[0]

    def plugin_processes(self) -> list[int]:
        """plakar's processes left running: its cache daemon and plugins."""
        return _processes_of(self.cache, self.home)

    def stop(self) -> None:
        """End the cache daemon (and the fork server of a package installed here), and
        check that no plugin process outlives them."""
        for pid in self.plugin_processes():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                # plakar's cache daemon, and the fork server of an installed
                # azblob package (it runs from the package's folder).
                if b" cached" in cmd.replace(b"\0", b" ") or cmd.endswith(b"cached\0") \
                        or b"\0fork-server\0" in cmd:
                    os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while self.plugin_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self.plugin_processes()
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        assert not left, f"processes left behind: {left}"


def write_pydir_package(dest: Path) -> Path:
    """A plakar package folder for the test-only pydir connector; returns its manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    exe = dest / "pydir"
    source = (ROOT / "tests" / "pydir_connector.py").read_text()
    exe.write_text(f"#!{sys.executable}\n{source}")
    exe.chmod(0o755)
    connectors = "".join(
        f"  - type: {kind}\n    protocols: [pydir]\n    executable: pydir\n    args: [{kind}]\n"
        for kind in ("importer", "exporter", "storage"))
    manifest = dest / "manifest.yaml"
    manifest.write_text(
        "name: pydir\ndisplay_name: pydir test connector\n"
        "description: a local directory through kloset_sdk (tests only)\n"
        f"api_version: v1.1.0\nconnectors:\n{connectors}")
    return manifest
