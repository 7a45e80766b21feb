#!/usr/bin/env python3
"""localdir: a plakar connector for a local directory, on kloset_sdk's top level alone.

    plakar at /var/backups backup localdir:///home/me/notes
    plakar at /var/backups restore -to localdir:///tmp/notes SNAPSHOT

Files, directories and symlinks, with their modes and modification times.
``plakar pkg create manifest.yaml v1.0.0`` in this folder makes the package;
plakar runs this file with the ``python3`` of its PATH, which needs kloset_sdk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import kloset_sdk as sdk


def folder(config: Mapping[str, str]) -> Path:
    location = config.get("location", "")
    if not location.startswith("localdir:///"):
        raise sdk.ConfigError(f"location must be localdir:///an/absolute/path, not {location!r}")
    return Path(location.removeprefix("localdir://"))


def mtime(st: os.stat_result) -> datetime:
    # Whole microseconds, rounded up, as plakar keeps them.
    return sdk.EPOCH + timedelta(microseconds=-(-st.st_mtime_ns // 1000))


def set_times(path: Path, info: sdk.FileInfo) -> None:
    ns = (info.mod_time - sdk.EPOCH) // timedelta(microseconds=1) * 1000
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


class LocalImporter(sdk.Importer):
    type = "localdir"

    def __init__(self, proto: str, config: Mapping[str, str], options: sdk.Options) -> None:
        super().__init__(proto, config, options)
        self.path = folder(config)
        if not self.path.is_dir():
            raise sdk.ConfigError(f"{self.path} is not a directory")
        self.origin, self.root = os.uname().nodename, str(self.path)

    def scan(self) -> Iterator[sdk.Record]:
        yield self.record(self.path)
        for top, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in dirs + sorted(files):
                yield self.record(Path(top, name))

    def record(self, path: Path) -> sdk.Record:
        st = path.lstat()
        mode = sdk.filemode.from_posix(st.st_mode)
        if sdk.filemode.is_dir(mode):
            return sdk.Record.directory(str(path), mod_time=mtime(st), mode=mode)
        if sdk.filemode.is_symlink(mode):
            return sdk.Record.symlink(str(path), os.readlink(path), mod_time=mtime(st))
        if not sdk.filemode.is_regular(mode):
            return sdk.Record.failure(str(path), "not a file, a directory or a symlink")
        # The opener runs only if plakar reads the file (not for an unchanged one).
        return sdk.Record.file(str(path), size=st.st_size, mod_time=mtime(st), mode=mode,
                               opener=lambda: path.open("rb"))


class LocalExporter(sdk.Exporter):
    type = "localdir"

    def __init__(self, proto: str, config: Mapping[str, str], options: sdk.Options) -> None:
        super().__init__(proto, config, options)
        self.path = folder(config)
        self.path.mkdir(parents=True, exist_ok=True)
        self.origin, self.root = os.uname().nodename, str(self.path)
        self.dirs: list[tuple[Path, sdk.FileInfo]] = []

    def export(self, record: sdk.Record, content: sdk.IncomingContent | None) -> None:
        info = record.file_info
        if record.error or record.is_xattr or info is None:
            return
        if ".." in Path(record.pathname).parts:
            raise sdk.ConnectorError(f"{record.pathname} would leave {self.path}")
        target = self.path / record.pathname.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if info.is_dir:
            target.mkdir(exist_ok=True)
            self.dirs.append((target, info))  # dated once its content is written
        elif info.is_symlink:
            target.symlink_to(record.target)
            set_times(target, info)
        elif content is not None:
            partial = target.with_name(f".{target.name}.partial")  # never seen half-written
            with partial.open("wb") as out:
                for chunk in content.chunks():
                    out.write(chunk)
            partial.chmod(sdk.filemode.perm(info.mode))
            set_times(partial, info)
            partial.rename(target)

    def close(self) -> None:
        for target, info in sorted(self.dirs, key=lambda d: -len(d[0].parts)):  # deepest first
            target.chmod(sdk.filemode.perm(info.mode))
            set_times(target, info)


if __name__ == "__main__":
    sdk.main("localdir", {"importer": LocalImporter, "exporter": LocalExporter})
