"""Section 10's plakar commands, two source trees A/B, the Go package as anchor.

    .venv/bin/python bench/ab_plakar.py /path/to/tree-A /path/to/tree-B [--runs N]

Each tree's connectors are installed in a plakar home of their own as a
package whose executable runs ``python -m plakar_azblob`` with that tree's
``src`` first on PYTHONPATH (this venv's dependencies; each tree gets a fork
server of its own, as the server is keyed by the code it serves); the Go
package in a third home. Against one Azurite, as in section 10: an unchanged
incremental backup of 1 000 x 4 KiB blobs, then ``ls`` and ``check`` of a
store in Azure holding 2 snapshots of 5 MiB. Every command runs once
unmeasured, then ``--runs`` times alternated (A, B, Go, A, B, Go...); prints
each contender's median, its runs, and B/A. Not part of ``make bench``: for
changes that might cost the plakar commands, measured against an older tree
(``git worktree add /tmp/before <commit>``).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from azblob_package import write_azblob_package  # noqa: E402
from azurite import start_azurite  # noqa: E402
from bench_go import SMALL, Contender, alternate, fill_small, store_tree  # noqa: E402
from common import sdk_client  # noqa: E402
from go_package import install_go_azblob  # noqa: E402
from plakar_env import PlakarEnv  # noqa: E402


def tree_installer(src: Path) -> Callable[[PlakarEnv], None]:
    """``plakar pkg add`` of a package running the connectors of ``src``."""

    def install(env: PlakarEnv) -> None:
        manifest = write_azblob_package(
            env.root / "package",
            f"env PYTHONPATH={shlex.quote(str(src))} {shlex.quote(sys.executable)} "
            "-m plakar_azblob")
        out = env.root / "ptar"
        out.mkdir()
        env.run("pkg", "add", str(env.pkg_create(manifest, "v0.0.1", out)))

    return install


def report(what: str, times: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    for name, runs in times.items():
        print(f"{what:10} {name:3} {medians[name]:.3f} s  "
              + " ".join(f"{t:.2f}" for t in runs))
    print(f"{what:10} B/A {medians['B'] / medians['A']:.3f} (time; < 1: B faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", type=Path, help="tree A (its src/ is used)")
    parser.add_argument("b", type=Path, help="tree B")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    az = start_azurite()
    contenders: dict[str, Contender] = {}
    try:
        contenders["A"] = Contender("A", az, tree_installer(args.a.resolve() / "src"))
        contenders["B"] = Contender("B", az, tree_installer(args.b.resolve() / "src"))
        contenders["Go"] = Contender("Go", az, install_go_azblob)
        fill_small(az, "small", SMALL)
        sdk_client(az, "stores").create_container()
        tree = store_tree(contenders["A"].pk.root / "tree")
        stores: dict[str, str] = {}
        for name, c in contenders.items():
            c.run("source", "add", "src", "azblob://small", f"connection_string={c.cs()}")
            stores[name] = c.local_store()
            c.run("at", stores[name], "backup", "@src")
            c.run("store", "add", "st", f"azblob://stores/{name.lower()}",
                  f"connection_string={c.cs()}")
            c.run("at", "@st", "create")
            for _ in range(2):
                c.run("at", "@st", "backup", str(tree))

        def command(name: str, *words: str) -> Callable[[], Any]:
            return lambda: contenders[name].run(*words)

        report("unchanged", alternate(args.runs, **{
            n: command(n, "at", stores[n], "backup", "@src") for n in contenders}))
        for word in ("ls", "check"):
            report(word, alternate(args.runs, **{
                n: command(n, "at", "@st", word) for n in contenders}))
    finally:
        for c in contenders.values():
            c.close()
        az.stop()


if __name__ == "__main__":
    main()
