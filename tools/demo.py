"""``make demo``: the azblob package end to end, on a private Azurite and plakar.

Usage: python tools/demo.py [--ptar dist/azblob_vX.Y.Z_OS_ARCH.ptar] [--keep-path]

1. starts Azurite (in memory) on a free loopback port;
2. installs the package (``make package``'s .ptar) into a plakar with its own
   temporary HOME and XDG folders, and a PATH without Python (--keep-path
   keeps yours);
3. fills a container with sample blobs (nested prefixes, metadata);
4. source: ``source add`` + ``backup @src``, into a Kloset store kept on
   Azurite (storage: ``store add`` + ``create``), which also gets a backup of
   a local sample folder;
5. destination: ``destination add`` + ``restore -to @dst`` of the container
   snapshot into another container; the local folder is restored too;
6. checks that every restored byte equals the original, prints a summary,
   then stops plakar's cache daemon and Azurite and removes everything.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from subprocess import CompletedProcess

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

import plugin_package  # noqa: E402
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings  # noqa: E402
from azurite import start_azurite  # noqa: E402
from plakar_env import PlakarEnv  # noqa: E402

MiB = 1024 * 1024
NO_PYTHON_PATH = "/nonexistent"


def sample_blobs() -> dict[str, tuple[bytes, dict[str, str]]]:
    """Blob name -> (content, metadata)."""
    return {
        "README.txt": (b"plakar-azblob demo container\n", {"purpose": "demo"}),
        "reports/2024/q1.csv": (b"month,total\njan,10\nfeb,12\nmar,9\n", {"quarter": "q1"}),
        "reports/2024/q2.csv": (b"month,total\napr,11\nmay,14\njun,13\n", {"quarter": "q2"}),
        "images/raw/pixels.bin": (os.urandom(6 * MiB + 123), {"camera": "none"}),
        "deep/a/b/c/d/leaf.json": (b'{"depth": 5}\n', {}),
        "unicode/\u00e9t\u00e9 \u65e5\u672c.txt": ("summer \u2600\n".encode(), {"lang": "fr-ja"}),
        "empty.bin": (b"", {}),
    }


def sample_folder(root: Path) -> None:
    (root / "etc" / "app").mkdir(parents=True)
    (root / "etc" / "app" / "config.toml").write_text('name = "demo"\n')
    (root / "var" / "data").mkdir(parents=True)
    (root / "var" / "data" / "blob.bin").write_bytes(os.urandom(2 * MiB + 7))
    (root / "notes.md").write_text("# local folder backed up into the Azure store\n")


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def container_bytes(container: ContainerClient) -> dict[str, bytes]:
    return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}


class Demo:
    def __init__(self, plakar: PlakarEnv, connection_string: str) -> None:
        self.plakar = plakar
        self.cs = connection_string

    def run(self, *args: str) -> CompletedProcess[str]:
        shown = " ".join(a.replace(self.cs, "<azurite>") if self.cs in a else a for a in args)
        print(f"  $ plakar {shown}", flush=True)
        started = time.monotonic()
        proc = self.plakar.run(*args, timeout=600)
        print(f"    ok ({time.monotonic() - started:.1f} s)", flush=True)
        return proc

    def backup(self, *args: str) -> str:
        proc = self.run(*args)
        found = re.findall(r"^([0-9a-f]{8}): backup completed", proc.stdout + proc.stderr,
                           re.MULTILINE)
        if not found:
            raise RuntimeError(f"no snapshot id in:\n{proc.stdout}{proc.stderr}")
        return str(found[-1])


def demo(ptar: Path, keep_path: bool) -> bool:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="azblob-demo-"))
    print("starting Azurite...", flush=True)
    azurite = start_azurite()
    plakar: PlakarEnv | None = None
    try:
        print(f"  Azurite blob service on {azurite.endpoint}")
        env = {} if keep_path else {"PATH": NO_PYTHON_PATH}
        plakar = PlakarEnv(extra_env=env)
        print(f"private plakar in {plakar.root} (PATH={plakar.env['PATH']})")
        d = Demo(plakar, azurite.connection_string)
        cs = f"connection_string={azurite.connection_string}"
        d.run("pkg", "add", str(ptar))
        shown = plakar.run("pkg", "show").stdout.strip()
        print(f"  installed: {shown}")

        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        src = service.create_container("demo-source")
        blobs = sample_blobs()
        for name, (data, metadata) in blobs.items():
            src.upload_blob(name, data, metadata=metadata or None,
                            content_settings=ContentSettings(content_type="text/plain"))
        total = sum(len(data) for data, _ in blobs.values())
        print(f"container demo-source: {len(blobs)} blobs, {total / MiB:.1f} MiB")

        print("storage: a Kloset store in container demo-store")
        d.run("store", "add", "azstore", "azblob://demo-store/kloset", cs)
        d.run("at", "@azstore", "create")

        print("source: back up the container")
        d.run("source", "add", "src", "azblob://demo-source", cs)
        snap_src = d.backup("at", "@azstore", "backup", "@src")

        print("storage: back up a local folder into the same store")
        local = work / "local-folder"
        sample_folder(local)
        snap_local = d.backup("at", "@azstore", "backup", str(local))
        for line in d.run("at", "@azstore", "ls").stdout.splitlines():
            print(f"    {line}")

        print("destination: restore the container snapshot into container demo-restored")
        d.run("destination", "add", "dst", "azblob://demo-restored", cs)
        d.run("at", "@azstore", "restore", "-to", "@dst", snap_src)
        restored_local = work / "restored-folder"
        d.run("at", "@azstore", "restore", "-to", str(restored_local), snap_local)

        expected_blobs = {name: data for name, (data, _) in blobs.items()}
        got_blobs = container_bytes(service.get_container_client("demo-restored"))
        blobs_ok = got_blobs == expected_blobs
        local_ok = tree_bytes(restored_local) == tree_bytes(local)
        store_blobs = list(service.get_container_client("demo-store").list_blobs())
        store_size = sum(b.size for b in store_blobs)

        print()
        print("summary")
        print(f"  package            {ptar.name}")
        print(f"  source snapshot    {snap_src}: {len(blobs)} blobs from demo-source")
        print(f"  folder snapshot    {snap_local}: {len(tree_bytes(local))} files")
        print(f"  store demo-store   {len(store_blobs)} blobs, {store_size / MiB:.1f} MiB "
              "(encrypted, deduplicated)")
        print(f"  demo-restored      {'bytes equal' if blobs_ok else 'DIFFERENT'} "
              f"({len(got_blobs)} blobs)")
        print(f"  restored folder    {'bytes equal' if local_ok else 'DIFFERENT'}")
        print(f"  elapsed            {time.monotonic() - started:.1f} s")
        return blobs_ok and local_ok
    finally:
        print("cleaning up: plakar cache daemon, Azurite, temporary folders", flush=True)
        try:
            if plakar is not None:
                plakar.stop()
        finally:
            azurite.stop()
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ptar", type=Path, help="the package (default: make package's)")
    parser.add_argument("--keep-path", action="store_true",
                        help="keep your PATH for plakar (default: a PATH without Python)")
    args = parser.parse_args(argv)
    ptar = args.ptar or plugin_package.ptar_path(plugin_package.version())
    if ptar is None or not ptar.is_file():
        print("no package: run `make package` (or `make demo`)", file=sys.stderr)
        return 1
    ok = demo(ptar.resolve(), args.keep_path)
    print("demo OK" if ok else "demo FAILED: restored bytes differ")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
