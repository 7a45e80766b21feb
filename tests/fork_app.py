"""A test-only connector started through kloset_sdk.forkserver.

``python fork_app.py [--version V] importer``: an importer whose Init answers
with facts about the process serving it (origin: pid, parent pid, working
directory, umask, $FORK_TEST, argv; root: its name in /proc), so that tests
see whether it was forked and what it inherited. ``V`` is part of the code's
fingerprint (two versions never share a server).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from kloset_sdk import forkserver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

APP = "fork-test"


def factory() -> Any:
    from kloset_sdk import Importer, Options, Record

    class FactsImporter(Importer):
        type = "facts"

        def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
            super().__init__(proto, config, options)
            umask = os.umask(0)
            os.umask(umask)
            self.origin = json.dumps({
                "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "umask": umask,
                "env": os.environ.get("FORK_TEST"), "argv": sys.argv,
                "tmpdir": os.environ.get("TMPDIR"),
            })
            self.root = "/" + Path(f"/proc/{os.getpid()}/comm").read_text().strip()

        def scan(self) -> Iterator[Record]:
            yield Record.directory("/")

    return FactsImporter


def serve(kind: str, exit: Callable[[int], NoReturn] = os._exit) -> NoReturn:
    from kloset_sdk import server

    server.serve(kind, factory(), exit=exit)


def preload() -> None:
    import kloset_sdk.server  # noqa: F401

    factory()


def main() -> None:
    args = sys.argv[1:]
    version = ""
    if args[:1] == ["--version"]:
        version, args = args[1], args[2:]
    code = forkserver.fingerprint("kloset_sdk") + "\nfork_app " + version
    argv = [sys.executable, os.path.abspath(__file__), "--version", version]
    if len(args) == 2 and args[0] == forkserver.SERVER_ARG:
        forkserver.run_server(args[1], fingerprint=code, preload=preload, serve=serve)
    kind = args[0]
    forkserver.launch(kind, app=APP, fingerprint=code, server_argv=argv,
                      serve_here=lambda: serve(kind))


if __name__ == "__main__":
    main()
