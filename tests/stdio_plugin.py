"""Spawn a connector the way plakar does (two pipes) and reach it with grpcio.

grpcio clients need a socket, so the test listens on a private Unix socket
and relays the one connection it accepts to the plugin's stdin/stdout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent


def _pump(src: int, dst: int, on_end: threading.Event | None = None) -> None:
    """Copy ``src`` to ``dst`` until EOF, then close both: the pump owns them
    (its own duplicates), so that no descriptor number it still uses can be
    closed and reused under it (it would write a stale connection's bytes into
    another plugin's pipe)."""
    try:
        while data := os.read(src, 1 << 20):
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view):]
    except OSError:
        pass
    finally:
        os.close(src)
        os.close(dst)
        if on_end is not None:
            on_end.set()


class StdioPlugin:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=dict(env or os.environ))
        self._dir = tempfile.mkdtemp(prefix="stdio-test-")
        path = os.path.join(self._dir, "client.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self.stderr_lines: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.channel = grpc.insecure_channel(f"unix:{path}", options=[
            ("grpc.max_receive_message_length", 4 << 20),
            ("grpc.max_send_message_length", 4 << 20),
        ])

    def _accept(self) -> None:
        conn, _ = self._listener.accept()
        self._conn = conn
        assert self.proc.stdin is not None and self.proc.stdout is not None
        stdin_fd, stdout_fd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        threading.Thread(target=_pump, args=(os.dup(conn.fileno()), os.dup(stdin_fd)),
                         daemon=True).start()
        threading.Thread(target=_pump, args=(os.dup(stdout_fd), os.dup(conn.fileno())),
                         daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    @property
    def stderr(self) -> str:
        return b"".join(self.stderr_lines).decode(errors="replace")

    def close_stdin(self) -> float:
        """Close the plugin's stdin, as plakar does; return the time it took to exit."""
        self.channel.close()
        start = time.monotonic()
        assert self.proc.stdin is not None
        self._end_relay()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        finally:
            self.kill()
        return time.monotonic() - start

    def _end_relay(self) -> None:
        """Stop relaying: the pumps see EOF and close their duplicates (the one
        of stdin included, so that the plugin sees EOF once ours is closed)."""
        conn = getattr(self, "_conn", None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._end_relay()
        self._listener.close()
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self._dir, "client.sock"))
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


def pydir_plugin(kind: str, env: Mapping[str, str] | None = None) -> StdioPlugin:
    return StdioPlugin([sys.executable, str(ROOT / "tests" / "pydir_connector.py"), kind], env)
