"""How a connector program starts: :func:`main`, or :func:`serve` for one connector.

The only module of the SDK's face that reaches its runtime, and only when
called: importing it loads nothing else, and a connector started through a
fork server loads only the launcher's side of it before its process is
handed over (see :mod:`kloset_sdk._process.forkserver`).
"""

from __future__ import annotations

import os
import sys

# Not typing.TYPE_CHECKING: importing typing alone costs a launcher ~10 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NoReturn

    Factory = Callable[..., Any]

STOP_ARG = "stop-fork-server"


def serve(kind: str, factory: Factory) -> NoReturn:
    """Serve the connector built by ``factory`` on stdio, in this process, then exit it.

    ``kind`` is "importer", "exporter" or "storage"; ``factory`` is called on
    plakar's Init with ``(proto, config, options)`` (``(proto, config)`` for
    a store) and returns the connector: usually its class. Never returns: the
    process exits as soon as plakar closes stdin.
    """
    from ._process import stdio

    stdio.serve(kind, factory)


def main(app: str, connectors: Mapping[str, str | Factory], *,
         preload: Callable[[], None] | None = None,
         argv: Sequence[str] | None = None) -> NoReturn:
    """Run the connector program ``app`` as plakar starts it, with ``argv`` (default:
    this process's arguments).

    ``connectors`` maps each kind the program serves ("importer", "exporter",
    "storage") to its factory (see :func:`serve`), or to where to import it
    from, ``"module:attribute"``: then only the process that serves that kind
    imports it, and a connector started through the fork server imports none.

    - ``app KIND`` serves connector KIND on stdio: in a child of the program's
      fork server if one answers at once (a start of a few milliseconds), else
      in this process, after starting a fork server in the background for the
      connectors that come next (``KLOSET_FORK_SERVER_IDLE=0``: never);
    - ``app fork-server SOCKET`` is that server (started by a connector, never
      by hand): it loads the SDK's runtime and every connector, then calls
      ``preload`` for whatever else its children should find loaded (libraries
      that import more at their first use, tables built once), and forks a
      connector for each start;
    - ``app stop-fork-server`` stops this user's fork servers of ``app``.

    A fork server serves only starts of the same code (kloset_sdk and the
    packages of the connectors, file by file, the interpreter and installed
    distributions) and of the same confinement (namespaces, credentials,
    limits...), so an upgrade or a sandbox never reaches an older server.
    """
    from ._process import forkserver

    args = sys.argv[1:] if argv is None else list(argv)
    code = forkserver.fingerprint("kloset_sdk", *_packages(connectors))
    if len(args) == 2 and args[0] == forkserver.SERVER_ARG:
        from ._process import forkhost

        forkhost.run(args[1], fingerprint=code,
                     preload=lambda: _preload(connectors, preload),
                     serve=lambda kind, exit: _serve(connectors, kind, exit))
    if args == [STOP_ARG]:
        print(f"stopped {forkserver.stop_servers(app)} fork server(s)", file=sys.stderr)
        raise SystemExit(0)
    if len(args) != 1 or args[0] not in connectors:
        print(f"usage: {app} {'|'.join(connectors)}", file=sys.stderr)
        raise SystemExit(2)
    kind = args[0]
    program = _this_program(forkserver.interpreter_options)
    if program is None:  # nothing to start a server with
        _serve(connectors, kind)
    forkserver.launch(kind, app=app, fingerprint=code, server_argv=program,
                      serve_here=lambda: _serve(connectors, kind))


def _factory(target: str | Factory) -> Factory:
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    # __import__ rather than importlib's: the import statement's own path, which
    # ``python -X importtime`` reports.
    __import__(module)
    found: Factory = getattr(sys.modules[module], attribute)
    return found


def _serve(connectors: Mapping[str, str | Factory], kind: str,
           exit: Callable[[int], NoReturn] = os._exit) -> NoReturn:
    from ._process import stdio

    stdio.serve(kind, _factory(connectors[kind]), exit=exit)


def _preload(connectors: Mapping[str, str | Factory], preload: Callable[[], None] | None,
             ) -> None:
    """What the fork server loads once for every connector it forks."""
    from ._process import stdio  # noqa: F401  (the runtime: wire, services)

    for target in connectors.values():
        _factory(target)
    if preload is not None:
        preload()


def _packages(connectors: Mapping[str, str | Factory]) -> list[str]:
    """The top-level packages of the connectors' code (imported: their files are part
    of the code's fingerprint)."""
    found: list[str] = []
    for target in connectors.values():
        module = target.partition(":")[0] if isinstance(target, str) else \
            getattr(target, "__module__", "__main__")
        top = module.partition(".")[0]
        if top not in found and top != "kloset_sdk":
            found.append(top)
    for top in found:
        if top not in sys.modules:
            __import__(top)
    return found


def _this_program(interpreter_options: Callable[[], list[str]]) -> list[str] | None:
    """How to run this program again: the fork server re-executes it (with a clean
    environment). None if it cannot be told (``python -c``)."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return [sys.executable, *interpreter_options(), "-m",
                spec.name.removesuffix(".__main__")]
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not os.path.isfile(script):
        return None
    return [sys.executable, *interpreter_options(), script]
