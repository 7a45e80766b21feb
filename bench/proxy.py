"""A loopback HTTP/1.1 proxy in front of Azurite that counts requests and can add latency.

Each client connection gets its own upstream connection (no pipelining in
the Azure SDK's HTTP client, so request N+1 starts after response N). The
proxy parses request heads only: it sleeps ``delay`` seconds before
forwarding each one (the "+20 ms per request" of the latency runs), counts
requests by kind (``get_blob`` = a GET of blob content, ``list``, ``put``,
``other``) and attributes the response bytes that follow to that kind.
Response bytes are relayed untouched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

from loopback_proxy import LoopbackProxy

BUFFER = 256 * 1024


def request_kind(method: str, target: str) -> str:
    url = urlsplit(target)
    query = url.query
    segments = [s for s in url.path.split("/") if s]
    if method == "GET" and "comp=list" in query:
        return "list"
    if method == "GET" and len(segments) >= 3 and "comp=" not in query:
        return "get_blob"
    if method == "PUT":
        return "put"
    return "other"


class CountingProxy(LoopbackProxy):
    def __init__(self, upstream_port: int, delay: float = 0.0) -> None:
        self.requests: Counter[str] = Counter()
        self.response_bytes: Counter[str] = Counter()
        super().__init__(upstream_port, delay=delay, name="proxy")

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.response_bytes.clear()

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"requests": dict(self.requests), "response_bytes": dict(self.response_bytes)}

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            self._track(s)
        current = ["other"]  # kind of the request whose response is flowing back
        back = threading.Thread(target=self._responses, args=(upstream, client, current),
                                daemon=True, name="proxy-back")
        back.start()
        try:
            self._requests(client, upstream, current)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)
            back.join()
            for s in (client, upstream):
                self._untrack(s)
                s.close()

    def _requests(self, client: socket.socket, upstream: socket.socket,
                  current: list[str]) -> None:
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                data = client.recv(BUFFER)
                if not data:
                    return
                pending += data
            head, pending = pending.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            kind = request_kind(method, target)
            with self._lock:
                self.requests[kind] += 1
            current[0] = kind
            if self.delay:
                time.sleep(self.delay)
            upstream.sendall(head + b"\r\n\r\n")
            if headers.get("transfer-encoding", "").lower() == "chunked":
                pending = self._chunked(client, upstream, pending)
            else:
                left = int(headers.get("content-length", "0") or 0)
                if pending:
                    part, pending = pending[:left], pending[left:]
                    upstream.sendall(part)
                    left -= len(part)
                buf = bytearray(BUFFER)
                view = memoryview(buf)
                while left > 0:
                    n = client.recv_into(buf, min(left, BUFFER))
                    if not n:
                        return
                    upstream.sendall(view[:n])
                    left -= n

    def _chunked(self, client: socket.socket, upstream: socket.socket, pending: bytes) -> bytes:
        """Forward a chunked body; return what follows it."""
        while True:
            while b"\r\n" not in pending:
                data = client.recv(BUFFER)
                if not data:
                    raise OSError("client closed mid-body")
                pending += data
            size_line, rest = pending.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            need = size + 2  # data + CRLF
            while len(rest) < need:
                data = client.recv(BUFFER)
                if not data:
                    raise OSError("client closed mid-body")
                rest += data
            upstream.sendall(size_line + b"\r\n" + rest[:need])
            pending = rest[need:]
            if size == 0:
                return pending

    def _responses(self, upstream: socket.socket, client: socket.socket,
                   current: list[str]) -> None:
        buf = bytearray(BUFFER)
        view = memoryview(buf)
        try:
            while n := upstream.recv_into(buf):
                with self._lock:
                    self.response_bytes[current[0]] += n
                client.sendall(view[:n])
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)
