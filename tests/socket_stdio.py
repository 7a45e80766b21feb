"""Serve a stdio connector on loopback TCP: each connection becomes the stdin and
stdout of a new process, as plakar's pipes are.

HTTP/2 test tools (h2spec, the fuzzer) connect over TCP, while connectors speak
on their standard input and output: this listener hands every accepted socket
to a fresh ``argv`` process as both, then forgets it (the process alone holds
it, so it sees the end of the connection as plakar's closed pipe). Each
process's standard error is kept, by connection, for the tests to read.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

EXIT_TIMEOUT = 10.0  # seconds a process may take to exit once its peer has gone


@dataclass
class Spawned:
    """One connection's process and where its standard error goes."""

    proc: subprocess.Popen[bytes]
    stderr_file: tempfile._TemporaryFileWrapper[bytes] = field(repr=False)

    def stderr(self) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")


class SocketStdio:
    """Listens on 127.0.0.1 (``port``); serves each connection with a new ``argv`` process."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self._argv = list(argv)
        self._env = dict(env if env is not None else os.environ)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.spawned: list[Spawned] = []
        self.killed: list[Spawned] = []  # processes that had not exited when closed
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="socket-stdio", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with conn, self._lock:
                if self._closed:
                    return
                errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
                proc = subprocess.Popen(self._argv, stdin=conn.fileno(), stdout=conn.fileno(),
                                        stderr=errors, env=self._env, close_fds=True)
                self.spawned.append(Spawned(proc, errors))

    def __enter__(self) -> SocketStdio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening; wait (bounded) for every process, killing those that linger."""
        with self._lock:
            self._closed = True
        self._listener.close()
        with contextlib.suppress(OSError):  # wake accept() if it still waits
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        self._thread.join(5)
        for spawned in self.spawned:
            try:
                spawned.proc.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.killed.append(spawned)
                spawned.proc.kill()
                spawned.proc.wait()

