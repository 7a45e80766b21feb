"""What the test and bench proxies in front of Azurite share: a loopback listener.

Each accepted connection is served by the subclass's ``_serve`` in a daemon
thread; the sockets a subclass registers with ``_track`` are shut down by
:meth:`close`, which then waits (bounded) for the threads to end.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

_P = TypeVar("_P", bound="LoopbackProxy")


class LoopbackProxy:
    """Listen on ``127.0.0.1:port`` for a service on ``127.0.0.1:upstream_port``.

    Subclasses set their own attributes before calling ``__init__``: it
    starts accepting at once.
    """

    def __init__(self, upstream_port: int, *, delay: float = 0.0, name: str = "proxy") -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.delay = delay
        self._name = name
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port = int(self._listener.getsockname()[1])
        self._start(self._accept, f"{name}-accept")

    def endpoint(self, account: str) -> str:
        return f"http://127.0.0.1:{self.port}/{account}"

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            # Closing alone leaves accept() blocked (Linux): shutdown wakes it.
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def _start(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=name)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._start(self._serve, f"{self._name}-conn", client)

    def _track(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conns.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)
