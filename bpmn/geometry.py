"""Numbers of the diagram: what counts as one in XML and in the document, and how it is written.

XML coordinates are ``xsd:double`` text; the document holds finite floats (or ints, after a trip
through a client); render writes integral values without a fraction (``100``, not ``100.0``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final, TypeGuard

__all__ = ["format_number", "is_number", "numbers", "parse_number", "points"]

# xsd:double without INF and NaN, which a drawing cannot use. Python's float() alone would also
# take "1_000", "infinity" and "nan".
_DOUBLE: Final = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
# Below this every integral float is exact and short enough to write in full.
_INTEGRAL_LIMIT: Final = 1e15


def parse_number(text: str) -> float | None:
    """The finite number ``text`` spells as an ``xsd:double``, or None."""
    if _DOUBLE.fullmatch(text) is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float; not a bool, which Python counts as an int."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return abs(value) < 2**1000  # float() of a larger int overflows
    return math.isfinite(value)


def numbers(value: object, size: int | None = None) -> list[float] | None:
    """``value`` as a list of finite floats (of ``size`` items, if given), or None."""
    if not isinstance(value, list | tuple) and (
        not isinstance(value, Sequence) or isinstance(value, str | bytes)
    ):
        return None
    if size is not None and len(value) != size:
        return None
    result = []
    for item in value:
        if not is_number(item):
            return None
        result.append(float(item))
    return result


def points(value: object) -> tuple[list[list[float]], int] | None:
    """``value`` as waypoints, with how many malformed points were left out; None if no list."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return None
    kept = [point for item in value if (point := numbers(item, 2)) is not None]
    return kept, len(value) - len(kept)


def format_number(value: float) -> str:
    if value.is_integer() and abs(value) < _INTEGRAL_LIMIT:
        return str(int(value))
    return repr(float(value))
