"""A test-only connector on kloset_sdk: a local directory as source, destination and store.

Protocol ``pydir``; location ``pydir:///absolute/path``. Run as
``python pydir_connector.py importer|exporter|storage``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from kloset_sdk import (
    EPOCH,
    AlreadyExistsError,
    ConfigError,
    Exporter,
    Importer,
    IncomingContent,
    NotFoundError,
    Options,
    Range,
    Record,
    Resource,
    Store,
    StoreFlag,
    filemode,
    serve,
)


def _root(config: Mapping[str, str]) -> Path:
    location = config.get("location", "")
    if not location.startswith("pydir://"):
        raise ConfigError(f"location must look like pydir:///path, not {location!r}")
    unknown = sorted(set(config) - {"location"})
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}")
    return Path(location.removeprefix("pydir://") or "/")


def _mtime(st: os.stat_result) -> datetime:
    # Integer arithmetic (floats lose the last microsecond), rounded up like plakar.
    return EPOCH + timedelta(microseconds=-(-st.st_mtime_ns // 1000))


def _set_mtime(path: Path, when: datetime) -> None:
    ns = (when - EPOCH) // timedelta(microseconds=1) * 1000
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


class DirImporter(Importer):
    type = "pydir"

    def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
        super().__init__(proto, config, options)
        self.path = _root(config)
        if not self.path.is_dir():
            raise ConfigError(f"{self.path} is not a directory")
        self.origin, self.root = "localhost", str(self.path)

    def scan(self) -> Iterator[Record]:
        yield self._record(self.path)
        for top, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                yield self._record(Path(top) / name)

    def _record(self, path: Path) -> Record:
        st = path.lstat()
        info = {"uid": st.st_uid, "gid": st.st_gid, "ino": st.st_ino, "dev": st.st_dev}
        mode = filemode.from_posix(st.st_mode)
        if filemode.is_dir(mode):
            return Record.directory(str(path), mod_time=_mtime(st), mode=mode, **info)
        if filemode.is_symlink(mode):
            return Record.symlink(str(path), os.readlink(path), mod_time=_mtime(st), **info)
        return Record.file(str(path), size=st.st_size, mod_time=_mtime(st), mode=mode,
                           opener=lambda: path.open("rb"), **info)


class DirExporter(Exporter):
    type = "pydir"

    def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
        super().__init__(proto, config, options)
        self.path = _root(config)
        self.path.mkdir(parents=True, exist_ok=True)
        self.origin, self.root = "localhost", str(self.path)
        self._dirs: list[tuple[Path, Record]] = []

    def _target(self, record: Record) -> Path:
        target = (self.path / record.pathname.lstrip("/")).resolve()
        if target != self.path and self.path not in target.parents:
            raise ValueError(f"{record.pathname} leaves the destination")
        return target

    def export(self, record: Record, content: IncomingContent | None) -> None:
        target = self._target(record)
        info = record.file_info
        assert info is not None
        if info.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            self._dirs.append((target, record))
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if info.is_symlink:
            os.symlink(record.target, target)
            return
        assert content is not None
        partial = target.with_name(f".{target.name}.partial")
        with partial.open("wb") as out:
            for chunk in content.chunks():
                out.write(chunk)
        os.chmod(partial, filemode.perm(info.mode))
        _set_mtime(partial, info.mod_time)
        partial.rename(target)

    def close(self) -> None:
        # Directory times last, deepest first: writing children changes them.
        for target, record in sorted(self._dirs, key=lambda d: -len(d[0].parts)):
            assert record.file_info is not None
            os.chmod(target, filemode.perm(record.file_info.mode))
            _set_mtime(target, record.file_info.mod_time)


class DirStore(Store):
    type = "pydir"

    def __init__(self, proto: str, config: Mapping[str, str]) -> None:
        super().__init__(proto, config)
        self.path = _root(config)
        self.origin, self.root = "localhost", str(self.path)

    def _object(self, resource: Resource, mac: bytes) -> Path:
        return self.path / resource.name.lower() / mac.hex()

    def create(self, config: bytes) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with (self.path / "CONFIG").open("xb") as out:
                out.write(config)
        except FileExistsError:
            raise AlreadyExistsError(f"a store already exists at {self.path}") from None

    def open(self) -> bytes:
        try:
            return (self.path / "CONFIG").read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no store at {self.path}") from None

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def list(self, resource: Resource, flags: StoreFlag) -> Iterable[bytes]:
        folder = self.path / resource.name.lower()
        if not folder.is_dir():
            return []
        return [bytes.fromhex(p.name) for p in folder.iterdir() if not p.name.startswith(".")]

    def put(self, resource: Resource, mac: bytes, content: IncomingContent,
            flags: StoreFlag) -> int:
        target = self._object(resource, mac)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        written = 0
        with partial.open("wb") as out:
            for chunk in content.chunks():
                written += out.write(chunk)
        partial.rename(target)
        return written

    def get(self, resource: Resource, mac: bytes, range: Range | None,
            flags: StoreFlag) -> Iterator[bytes]:
        target = self._object(resource, mac)
        try:
            handle = target.open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"{resource.name.lower()} {mac.hex()} does not exist") from None
        return _read(handle, range)

    def delete(self, resource: Resource, mac: bytes, flags: StoreFlag) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._object(resource, mac).unlink()


def _read(handle: os.PathLike[str] | object, rng: Range | None) -> Iterator[bytes]:
    with handle as f:  # type: ignore[attr-defined]
        remaining = -1
        if rng is not None:
            f.seek(rng.offset)
            remaining = rng.length
        while remaining != 0:
            chunk = f.read(1 << 20 if remaining < 0 else min(1 << 20, remaining))
            if not chunk:
                return
            remaining -= len(chunk) if remaining > 0 else 0
            yield chunk


FACTORIES = {"importer": DirImporter, "exporter": DirExporter, "storage": DirStore}

if __name__ == "__main__":
    serve(sys.argv[1], FACTORIES[sys.argv[1]])
