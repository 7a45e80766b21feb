"""Listing pages checked for well-formed XML beside the importer, in a helper process.

A page is read with regular expressions once expat has found it well-formed
(see :mod:`.listing`): the check is what makes a garbage or truncated page fail
instead of being misread, and it was a fifth of the CPU an importer spends per
listed blob, in the one interpreter thread that also builds and sends the
records. So a listing's pages are checked as its fetching threads receive them,
by a helper process on another core (:mod:`.wellformed`, run as a script, or
the frozen build run with its :data:`HELPER_ARG`).

Wherever the helper cannot serve (it cannot be started in a confined unit, it
died, it was stopped or answers garbage), the page is checked here, as it
always was, and the helper is not asked again: the verdict is the same either
way (the same :func:`.wellformed.verdict`), only the CPU it is spent on differs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from . import wellformed
from .wellformed import HEAD, HELPER_ARG, IRREGULAR, MALFORMED, REGULAR, verdict

__all__ = ["IRREGULAR", "MALFORMED", "REGULAR", "PageChecker", "helper_argv", "verdict"]

log = logging.getLogger("plakar_azblob")

# A smaller page is checked here: starting a helper, and handing it a page,
# cost more than checking a few hundred blobs (a full page is ~0.7 KiB a blob).
MIN_HELPED = 256 * 1024
# A verdict later than this (plus a second per 4 MiB) means the helper is stopped
# or starved: it is killed and the page checked here. Expat checks ~200 MiB/s.
DEADLINE = 10.0


def helper_argv() -> list[str]:
    """How to start the helper with this interpreter (or this frozen build)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, HELPER_ARG]
    # -I -S: nothing of the environment, no site-packages (a faster start).
    return [sys.executable, "-I", "-S", os.path.abspath(wellformed.__file__)]


class PageChecker:
    """The pages of one listing checked by one helper process, started at the
    first page worth it, stopped by :meth:`close`, one page at a time: in a thread
    of the checker's own (:meth:`submit`, so that no fetching thread waits for a
    verdict before asking for its next page), or in the caller's (:meth:`check`)."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self._argv = argv
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._given_up = False
        self._closed = False
        self._queue: ThreadPoolExecutor | None = None
        self.helped = 0  # pages checked by the helper
        self.here = 0  # pages checked in this process

    def submit(self, body: bytes, more: bool = True) -> Future[bytes] | None:
        """The verdict on ``body`` to come (:meth:`check` in a thread of this checker's
        own), so that the fetching thread asks for its next page at once; None where
        its reader is to check it: a page too small to be worth the helper, and the
        first one worth it, while the helper starts, only if ``more`` pages follow
        (a listing of one page never waits for nor starts one)."""
        if len(body) < MIN_HELPED or self._given_up:
            return None
        with self._lock:
            if self._closed:
                return None
            if self._queue is None:
                if not more:
                    return None
                self._queue = ThreadPoolExecutor(1, thread_name_prefix="page-check")
                self._queue.submit(self._warm)
                return None
            return self._queue.submit(self.check, body)

    def _warm(self) -> None:
        with self._lock:
            if self._process is None and not self._given_up:
                try:
                    self._start()
                except OSError as exc:
                    self._give_up(exc)

    def check(self, body: bytes) -> bytes:
        """The :func:`verdict` on ``body``, by the helper if it can give it."""
        if len(body) >= MIN_HELPED and not self._given_up:
            with self._lock:
                answer = self._helped(body)
            if answer is not None:
                return answer
        with self._lock:
            self.here += 1
        return verdict(body)

    def close(self) -> None:
        with self._lock:
            self._closed = self._given_up = True
            queue, self._queue = self._queue, None
        if queue is not None:
            queue.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._stop()

    def __enter__(self) -> PageChecker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _helped(self, body: bytes) -> bytes | None:
        if self._given_up:
            return None
        try:
            process = self._process or self._start()
            answer = _exchange(process, body, DEADLINE + len(body) / (4 << 20))
        except (OSError, subprocess.SubprocessError, ValueError, TimeoutError) as exc:
            self._give_up(exc)
            return None
        self.helped += 1
        return answer

    def _give_up(self, why: BaseException) -> None:
        log.debug("azblob: listing pages checked in the importer from now on: the helper "
                  "process %s", why)
        self._given_up = True
        self._stop()

    def _start(self) -> subprocess.Popen[bytes]:
        try:
            process = subprocess.Popen(
                self._argv or helper_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, close_fds=True, cwd="/")
        except OSError as exc:
            raise OSError(f"could not be started ({exc.strerror or exc})") from None
        self._process = process
        assert process.stdin is not None and process.stdout is not None
        for pipe in (process.stdin, process.stdout):
            os.set_blocking(pipe.fileno(), False)
        with contextlib.suppress(OSError):  # fewer wake-ups a page, where allowed
            fcntl.fcntl(process.stdin.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ: 1 MiB
        return process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        try:
            process.wait(timeout=1.0)  # its stdin ended: it exits at once if it runs
        except subprocess.TimeoutExpired:
            process.kill()  # stopped, or stuck
            process.wait()


def _exchange(process: subprocess.Popen[bytes], body: bytes, seconds: float) -> bytes:
    """Hand ``body`` to the helper and take its verdict, within ``seconds``."""
    assert process.stdin is not None and process.stdout is not None
    write_fd, read_fd = process.stdin.fileno(), process.stdout.fileno()
    deadline = time.monotonic() + seconds
    pieces = [memoryview(len(body).to_bytes(HEAD, "big")), memoryview(body)]
    poller = select.poll()
    poller.register(write_fd, select.POLLOUT)
    for piece in pieces:
        while piece:
            _wait(poller, deadline)
            try:
                piece = piece[os.write(write_fd, piece):]
            except BlockingIOError:
                continue
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    while True:
        _wait(poller, deadline)
        try:
            answer = os.read(read_fd, 2)
        except BlockingIOError:
            continue
        if answer in (REGULAR, IRREGULAR, MALFORMED):
            return answer
        raise ValueError("ended" if not answer else f"answered {answer[:2]!r}")


def _wait(poller: select.poll, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0 or not poller.poll(left * 1000):
        raise TimeoutError("did not answer in time")
