"""Compare two directory trees: bytes, modes, modification times, symlinks."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def snapshot(root: Path, *, times: bool = True) -> dict[str, tuple[object, ...]]:
    """Everything that must survive a round trip, keyed by relative path."""
    seen: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            # plakar keeps microseconds, rounding up
            mtime = -(-st.st_mtime_ns // 1000) if times else None
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                seen[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                seen[rel] = ("file", stat.S_IMODE(st.st_mode), mtime, path.read_bytes())
    return seen


def make_sample_tree(root: Path) -> None:
    """A small tree with the cases that matter: modes, times, empty and big files, links."""
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "hello.txt").write_text("hello, plakar\n")
    (root / "empty.bin").write_bytes(b"")
    (root / "docs" / "deep" / "er" / "random.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 3))
    (root / "docs" / "é ünïcode #1.txt").write_text("unicode name\n")
    script = root / "docs" / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    secret = root / "docs" / "private.key"
    secret.write_text("not really\n")
    secret.chmod(0o600)
    os.symlink("hello.txt", root / "link-to-hello")
    os.utime(root / "hello.txt", ns=(1_500_000_000_123_456_000, 1_500_000_000_123_456_000))
