"""The official Go azblob package, built from its source as a reference for tests and bench.

The source is an unmodified copy of PlakarKorp's ``integration-azblob``
(``$AZBLOB_GO_REFERENCE``, default ``shared/reference/integration-azblob``
beside this checkout or one of its parents, else ``/work/shared/...``).
That folder may be read-only, so it is copied into
``.tools/go-azblob-<hash16>/`` (ignored), where ``<hash16>`` is a hash of
its files: a changed reference gets a folder of its own. There the three
connectors are built with ``go build`` (about 1.5 minutes the first time,
for the module downloads) and packaged with ``plakar pkg create manifest.yaml
v1.0.0``. A folder that already holds the package is reused as is, so a
machine pays for the build once; a lock file makes two concurrent builds
(two pytest or bench runs) wait for each other instead of clashing.

Both packages are named ``azblob``: install this one into a ``PlakarEnv`` of
its own with ``install_go_azblob(env)``. ``go_binaries_dir()`` is the folder
of ``azblob-importer``, ``azblob-exporter`` and ``azblob-storage``, for
spawning them directly (the bench does).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from plakar_env import PlakarEnv

ROOT = Path(__file__).resolve().parent.parent
NAME = "azblob"
VERSION = "v1.0.0"
BINARIES = {"importer": "azblob-importer", "exporter": "azblob-exporter",
            "storage": "azblob-storage"}
BUILD_TIMEOUT = 1200  # seconds, for each `go build` (module downloads included)
_DONE = ".built"  # written last: the folder is complete


class GoPackageError(RuntimeError):
    """The Go reference package cannot be found or built."""


# Where the workplace keeps shared/ when a checkout is not beside it (a clone in /tmp).
WORKPLACE_SHARED = Path("/work/shared")


def reference_dir() -> Path:
    """The Go package's source: ``$AZBLOB_GO_REFERENCE``, else
    ``shared/reference/integration-azblob`` beside this checkout or one of its parents,
    else in the workplace's ``/work/shared``."""
    configured = os.environ.get("AZBLOB_GO_REFERENCE")
    if configured:
        candidates = [Path(configured)]
    else:
        candidates = [base / "shared" / "reference" / "integration-azblob"
                      for base in (*ROOT.parents, WORKPLACE_SHARED.parent)]
    for ref in candidates:
        if (ref / "manifest.yaml").is_file() and (ref / "go.mod").is_file():
            return ref
    how = "AZBLOB_GO_REFERENCE" if configured else "the default paths"
    raise GoPackageError(
        f"the official Go azblob package's source is not at {candidates[0]} ({how}): set "
        "AZBLOB_GO_REFERENCE to a copy of PlakarKorp/integrations' azblob/ folder")


def _source_files(ref: Path) -> list[Path]:
    """The reference's files (built binaries and packages left there excluded)."""
    skip = set(BINARIES.values())
    found = []
    for top, dirs, files in os.walk(ref):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name in skip or name.endswith(".ptar") or name.startswith("."):
                continue
            found.append(Path(top) / name)
    return found


def files_hash(base: Path, files: list[Path]) -> str:
    """16 hex digits of SHA-256 over ``files``' paths relative to ``base`` and contents."""
    digest = hashlib.sha256()
    for path in files:
        rel = path.relative_to(base).as_posix().encode()
        data = path.read_bytes()
        digest.update(b"%d:%s:%d:" % (len(rel), rel, len(data)))
        digest.update(data)
    return digest.hexdigest()[:16]


def reference_hash(ref: Path | None = None) -> str:
    """16 hex digits of SHA-256 over the reference's relative paths and contents."""
    ref = ref or reference_dir()
    return files_hash(ref, _source_files(ref))


def build_dir() -> Path:
    """``.tools/go-azblob-<hash16>``: where this reference is (or will be) built."""
    return ROOT / ".tools" / f"go-azblob-{reference_hash()}"


def _go() -> str:
    found = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise GoPackageError("go is not installed (Go >= 1.24 builds the reference package; "
                             "set GO=/path/to/go)")
    return found


def _ptar_in(folder: Path) -> Path | None:
    found = sorted(folder.glob(f"{NAME}_{VERSION}_*.ptar"))
    return found[0] if len(found) == 1 and (folder / _DONE).exists() else None


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # waits for a concurrent build to finish
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _copy_source(ref: Path, dest: Path) -> None:
    for path in _source_files(ref):
        target = dest / path.relative_to(ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        # The reference may be read-only (it is in CI): the copy must not be.
        target.chmod(0o644)


def _build(ref: Path, work: Path) -> None:
    _copy_source(ref, work)
    env = {**os.environ, "GOFLAGS": "-buildvcs=false"}
    for kind, exe in BINARIES.items():
        proc = subprocess.run([_go(), "build", "-o", exe, f"./{kind}"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise GoPackageError(f"go build ./{kind} of the Go azblob package failed "
                                 f"({proc.returncode}) in {work}:\n{proc.stderr[-4000:]}")
        mode = (work / exe).stat().st_mode
        (work / exe).chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env_plakar = PlakarEnv()
    try:
        ptar = env_plakar.pkg_create(work / "manifest.yaml", VERSION, work)
    finally:
        env_plakar.stop()
    if not ptar.name.startswith(f"{NAME}_{VERSION}_"):
        raise GoPackageError(f"plakar pkg create made {ptar.name}, not {NAME}_{VERSION}_*")
    (work / _DONE).write_text(f"{reference_hash(ref)} {platform.machine()}\n")


def go_package_ptar() -> Path:
    """The Go package's ``azblob_v1.0.0_OS_ARCH.ptar``, built first if this machine has none."""
    ref = reference_dir()
    final = build_dir()
    if (ptar := _ptar_in(final)) is not None:
        return ptar
    with _locked(final.parent / f"{final.name}.lock"):
        if (ptar := _ptar_in(final)) is not None:  # built meanwhile by someone else
            return ptar
        work = final.parent / f"{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            _build(ref, work)
            shutil.rmtree(final, ignore_errors=True)  # an incomplete earlier attempt
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    ptar = _ptar_in(final)
    assert ptar is not None, f"no package in {final}"
    return ptar


def go_binaries_dir() -> Path:
    """The folder of the built ``azblob-importer``, ``azblob-exporter``, ``azblob-storage``."""
    return go_package_ptar().parent


def go_binary(kind: str) -> Path:
    """The built connector of ``kind`` (importer, exporter or storage)."""
    return go_binaries_dir() / BINARIES[kind]


def install_go_azblob(env: PlakarEnv) -> Path:
    """``plakar pkg add`` the Go package into ``env`` (which must not have ours)."""
    ptar = go_package_ptar()
    env.run("pkg", "add", str(ptar))
    shown = env.run("pkg", "show").stdout
    if f"{NAME}@{VERSION}" not in shown:
        raise GoPackageError(f"plakar pkg show does not list {NAME}@{VERSION}:\n{shown}")
    return ptar


if __name__ == "__main__":  # build (or find) it: python tests/go_package.py
    print(go_package_ptar())
