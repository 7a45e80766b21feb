"""What a user sees when a plakar command fails: one clear line, no traceback, no secret."""

from __future__ import annotations

import re
from collections.abc import Iterable
from subprocess import CompletedProcess
from urllib.parse import parse_qs, quote

from plakar_env import output

# plakar's own generic advice after a store fails to open.
HINT = "To specify an alternative repository"
_PROGRAM = re.compile(r"^\S*plakar: ")
_OPEN_AGAIN = re.compile(r"^failed to open the repository at \S+: ")
_CRASH_MARKERS = ("Traceback", 'File "', "Exception", "panic:", "goroutine ")


def problem_lines(proc: CompletedProcess[str]) -> list[str]:
    """The lines of a failed command that report its problem.

    plakar's generic hint is left out, and so is one known repeat: when a
    store's connector refuses its configuration at Init, plakar v1.1.4 prints
    the message twice (kloset's ``storage.Open`` prints it, then plakar's main
    again after ``failed to open the repository at LOCATION:``). That second
    line counts only if it says exactly what the first said.
    """
    lines = [ln for ln in output(proc).splitlines() if ln.strip() and not ln.startswith(HINT)]
    if len(lines) == 2:
        first = _PROGRAM.sub("", lines[0])
        second = _OPEN_AGAIN.sub("", _PROGRAM.sub("", lines[1]))
        if first == second:
            return lines[1:]
    return lines


def secret_forms(secrets: Iterable[str]) -> set[str]:
    """Each secret, its percent-encoded form and, for a SAS, its signature alone."""
    forms: set[str] = set()
    for secret in secrets:
        forms |= {secret, quote(secret, safe="")}
        if "sig=" in secret:
            for sig in parse_qs(secret.split(";SharedAccessSignature=")[-1].lstrip("?")).get(
                    "sig", []):
                forms |= {sig, quote(sig, safe="")}
    return {f for f in forms if f}


def assert_clear_failure(proc: CompletedProcess[str], message: str,
                         secrets: Iterable[str] = ()) -> str:
    """The command failed with exactly one line holding ``message``, and no secret was shown.

    Returns that line.
    """
    text = output(proc)
    assert proc.returncode != 0, f"plakar exited 0:\n{text}"
    for marker in _CRASH_MARKERS:
        assert marker not in text, f"{marker!r} in the output:\n{text}"
    lines = problem_lines(proc)
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    assert message in lines[0], f"expected {message!r} in:\n{lines[0]}"
    for secret in secret_forms(secrets):
        assert secret not in text, "a secret is shown in the output"
    return lines[0]
