"""``plakar-azblob importer|exporter|storage``: serve one connector on stdio.

Started through a fork server when one runs (see :mod:`kloset_sdk._process.forkserver`):
this module imports nothing heavy until it has to serve in this process.
``plakar-azblob fork-server SOCKET`` is that server (started by a connector,
never by hand); ``plakar-azblob stop-fork-server`` stops this user's servers.
"""

from __future__ import annotations

import os
import sys

from kloset_sdk._process import forkserver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

APP = "plakar-azblob"
KINDS = ("importer", "exporter", "storage")
USAGE = "usage: plakar-azblob importer|exporter|storage"


def factory(kind: str) -> Callable[..., Any]:
    """The connector class of ``kind``, imported now."""
    if kind == "importer":
        from .source import AzureImporter

        return AzureImporter
    if kind == "exporter":
        from .destination import AzureExporter

        return AzureExporter
    from .storage import AzureStore

    return AzureStore


def preload() -> None:
    """What the fork server loads once for every connector it forks."""
    import kloset_sdk._process.stdio  # noqa: F401

    from .mapping import attributes
    from .transfer import direct

    for kind in KINDS:
        factory(kind)
    direct.preload()
    attributes.default_content_type("x")  # builds the type table once
    _ = __import__(__package__).__version__


def serve(kind: str, exit: Callable[[int], NoReturn] = os._exit) -> NoReturn:
    from kloset_sdk._process import stdio

    stdio.serve(kind, factory(kind), exit=exit)


def server_argv() -> list[str]:
    """How to run this program again (the fork server re-executes it, with a clean environment)."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, *forkserver.interpreter_options(), "-m",
            __package__ or "plakar_azblob"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    code = forkserver.fingerprint("kloset_sdk", "plakar_azblob")
    if len(args) == 2 and args[0] == forkserver.SERVER_ARG:
        from kloset_sdk._process import forkhost

        forkhost.run(args[1], fingerprint=code, preload=preload, serve=serve)
    if args == ["stop-fork-server"]:
        print(f"stopped {forkserver.stop_servers(APP)} fork server(s)", file=sys.stderr)
        raise SystemExit(0)
    if len(args) != 1 or args[0] not in KINDS:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    kind = args[0]
    forkserver.launch(kind, app=APP, fingerprint=code, server_argv=server_argv(),
                      serve_here=lambda: serve(kind))


if __name__ == "__main__":
    main()
