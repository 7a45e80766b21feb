"""A test-only connector started through kloset_sdk._process.forkserver.

``python fork_app.py [--app NAME] [--version V] importer``: an importer whose
Init answers with facts about the process serving it (origin, JSON: pid,
parent pid, working directory, umask, $FORK_TEST, argv, time zone offset,
character locale, and its confinement as /proc shows it; root: its name in
/proc), so that tests see whether it was forked and what it inherited. ``V``
is part of the code's fingerprint (two versions never share a server);
``--app`` names the server's socket (tests that use a shared folder give
their own). Init's config may ask the connector to end itself:
``{"signal": "9"}`` (killed by that signal) or ``{"exit": "N"}``
(``os._exit(N)``, no word to the launcher).

``fork_app.py [--app NAME] [--version V] client SOCKET hello|badcwd``
speaks the protocol to a server directly and prints (JSON) what it answers:
the hello (or refusal), the pid its pidfd names; ``badcwd`` then sends a
request whose working directory is a file, and the child's reply.

Version ``fail`` makes the server's preload raise. Every server started
appends its pid to ``SOCKET.starts`` (tests count server starts).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from kloset_sdk._process import forkserver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

APP = "fork-test"
STATUS_FIELDS = ("NoNewPrivs", "CapBnd", "CapEff", "Groups", "Seccomp")


def facts() -> dict[str, Any]:
    """What the serving process is and inherited."""
    import locale

    umask = os.umask(0)
    os.umask(umask)
    status = dict(line.split(":", 1) for line in
                  Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {
        "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.readlink("/proc/self/cwd"),
        "umask": umask, "env": os.environ.get("FORK_TEST"), "argv": sys.argv,
        "tmpdir": os.environ.get("TMPDIR"), "gmtoff": time.localtime().tm_gmtoff,
        "ctype": locale.setlocale(locale.LC_CTYPE),
        "status": {k: status[k].strip() for k in STATUS_FIELDS},
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "nice": os.nice(0), "net": os.readlink("/proc/self/ns/net"),
    }


def factory() -> Any:
    from kloset_sdk import Importer, Options, Record

    class FactsImporter(Importer):
        type = "facts"

        def __init__(self, proto: str, config: Mapping[str, str], options: Options) -> None:
            super().__init__(proto, config, options)
            if "signal" in config:
                os.kill(os.getpid(), int(config["signal"]))
                time.sleep(5)
            if "exit" in config:
                os._exit(int(config["exit"]))
            self.origin = json.dumps(facts())
            self.root = "/" + Path(f"/proc/{os.getpid()}/comm").read_text().strip()

        def scan(self) -> Iterator[Record]:
            yield Record.directory("/")

    return FactsImporter


def serve(kind: str, exit: Callable[[int], NoReturn] = os._exit) -> NoReturn:
    from kloset_sdk._process import stdio

    stdio.serve(kind, factory(), exit=exit)


def preload(version: str) -> None:
    import locale  # noqa: F401

    import kloset_sdk._process.stdio  # noqa: F401

    factory()
    if version == "fail":
        raise RuntimeError("this version cannot preload")


def client(path: str, mode: str, code: str) -> None:
    import socket
    import struct

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(5)
    conn.connect(path)
    ident = code.encode(errors="surrogateescape")
    conn.sendall(forkserver._IDENT.pack(forkserver.IDENT_MAGIC, len(ident)) + ident)
    hello, fds = forkserver.recv_fds(conn, forkserver._HELLO.size, 2)
    magic, pid, flags = forkserver._HELLO.unpack(hello)
    result: dict[str, Any] = {"magic": magic.decode(), "pid": pid, "fds": len(fds)}
    if flags & forkserver.HAS_PIDFD:
        info = Path(f"/proc/self/fdinfo/{fds[0]}").read_text()
        result["pidfd_pid"] = int(info.split("Pid:")[1].split()[0])
    if mode == "badcwd" and magic == forkserver.HELLO_MAGIC:
        header, body = forkserver._request("importer")
        with open(__file__, "rb") as f:
            conn.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                     struct.pack("4i", 0, 1, 2, f.fileno()))])
        conn.sendall(body)
        reply = conn.recv(1)
        if reply == forkserver.ERROR:
            size = struct.unpack("!I", conn.recv(4))[0]
            reply += conn.recv(size)
        result["reply"] = reply.decode(errors="replace")
    print(json.dumps(result))


def main() -> None:
    args = sys.argv[1:]
    app, version = APP, ""
    while args[:1] in (["--app"], ["--version"]):
        if args[0] == "--app":
            app = args[1]
        else:
            version = args[1]
        args = args[2:]
    code = forkserver.fingerprint("kloset_sdk") + "\nfork_app " + version
    argv = [sys.executable, *forkserver.interpreter_options(), os.path.abspath(__file__),
            "--app", app, "--version", version]
    if len(args) == 2 and args[0] == forkserver.SERVER_ARG:
        with open(args[1] + ".starts", "a") as f:
            f.write(f"{os.getpid()}\n")
        from kloset_sdk._process import forkhost

        forkhost.run(args[1], fingerprint=code, preload=lambda: preload(version),
                     serve=serve)
    if args[0] == "client":
        client(args[1], args[2], code)
        return
    kind = args[0]
    forkserver.launch(kind, app=app, fingerprint=code, server_argv=argv,
                      serve_here=lambda: serve(kind))


if __name__ == "__main__":
    main()
