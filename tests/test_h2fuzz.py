"""The HTTP/2 frame fuzzer's short run (tests/h2fuzz.py; ``make fuzz`` runs a long one).

Fixed seeds, so that CI runs the same cases every time: a failure names its
seed, and ``python tests/h2fuzz.py --seed N`` replays it.
"""

from __future__ import annotations

from pathlib import Path

from h2fuzz import fuzz, prepare

FIRST = 0
CASES = 50
SECONDS = 40  # at most: on a slow machine fewer cases run


def test_short_fuzz(tmp_path: Path) -> None:
    lines: list[str] = []
    done, failures = fuzz(FIRST, CASES, SECONDS, prepare(tmp_path), out=lines.append)
    print(lines[-1])
    assert not failures, "\n".join(lines)
    assert done >= 10
