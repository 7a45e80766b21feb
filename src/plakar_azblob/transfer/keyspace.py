"""Blob names as numbers, to guess where a listing's key ranges should be cut.

A listing is split into ranges of about the same number of names, but the
names beyond what has been listed are unknown. :class:`KeySpace` maps a name
to an integer that grows with it (names compare by code point, which is also
their UTF-8 byte order, the service's): each character after the listing's
prefix is a digit, whose value is its rank in the alphabet of the names seen
so far (hex digits for hashes, digits and ``/`` for dated paths, ...). The
density of names per unit, measured on pages already listed, then says where
the next ``n`` names probably end; :meth:`KeySpace.name_at` turns that point
back into a name to start a range from. A wrong guess costs a range that is
too short or too long (one that is too long is cut again as it is listed),
never a name missed or listed twice: ranges are cut by names, whatever is in
them.
"""

from __future__ import annotations

import os.path
from bisect import bisect_left
from collections.abc import Iterable

# Characters beyond the names' common part that count: 12 base-16..70 digits
# tell apart far more names than a container holds between two cuts.
_SIGNIFICANT = 12
_MAX_DEPTH = 200


class KeySpace:
    """Names under ``prefix`` as integers in ``[0, end)``, ordered as the names."""

    def __init__(self, prefix: str, names: Iterable[str]) -> None:
        names = sorted(names)
        self.prefix = prefix
        self._alphabet = sorted({c for n in names for c in n[len(prefix):]}) or ["0"]
        # Digit 0 is "the name ends here" ("a" < "a0"); the last digit stands for a
        # character above the whole alphabet.
        self._base = len(self._alphabet) + 2
        # Characters, not path components, are what the names share.
        shared = len(os.path.commonprefix(names[:1] + names[-1:])) - len(prefix)  # noqa: RUF071
        self._depth = min(max(shared, 0) + _SIGNIFICANT, _MAX_DEPTH)
        self.end: int = self._base ** self._depth

    def position(self, name: str | None) -> int:
        """Where ``name`` lies (None: the end of the space)."""
        if name is None:
            return self.end
        rest = name[len(self.prefix):len(self.prefix) + self._depth]
        value = 0
        for c in rest:
            value = value * self._base + bisect_left(self._alphabet, c) + 1
        scale: int = self._base ** (self._depth - len(rest))
        return value * scale

    def name_at(self, position: int) -> str:
        """A name at about ``position`` (the lowest name there, cut where a digit is 0)."""
        position = max(0, min(position, self.end - 1))
        digits = []
        for _ in range(self._depth):
            position, digit = divmod(position, self._base)
            digits.append(digit)
        chars = []
        for digit in reversed(digits):
            if digit == 0:
                break
            chars.append(self._alphabet[min(digit, len(self._alphabet)) - 1])
        return self.prefix + "".join(chars)

    def density(self, lower: str, last: str, count: int) -> float | None:
        """Names per unit on a page of ``count`` names after ``lower`` (where it was
        asked from, or its first name) up to ``last``. Measured from where the page
        was asked, a gap before its first name counts: names grouped in clusters
        (by day, by folder) are not taken for denser than they are."""
        width = self.position(last) - self.position(lower)
        if count < 1 or width <= 0:
            return None
        return count / width

    def cut(self, lower: str, upper: str | None, names: int, density: float) -> str | None:
        """Where a range from ``lower`` holding about ``names`` names should end: a name
        strictly between ``lower`` and ``upper`` (None: the end), or None if there is
        no room (the range is shorter than that)."""
        at = self.position(lower) + max(1, int(names / density))
        if at >= self.position(upper):
            return None
        name = self.name_at(at)
        if name <= lower or (upper is not None and name >= upper):
            return None
        return name
