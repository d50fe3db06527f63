"""Fractional indexes: sibling order keys that never need renumbering.

Keys are strings over ``0-9A-Za-z`` (ASCII order, so Python and JavaScript
compare them the same way) that never end in ``0``. Between any two distinct
keys there is always another, so inserting between two siblings writes one key
and leaves the others alone.
"""

from __future__ import annotations

from typing import Final

DIGITS: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE: Final = len(DIGITS)
_VALUE = {digit: value for value, digit in enumerate(DIGITS)}


def is_key(key: str) -> bool:
    return bool(key) and not key.endswith("0") and all(c in _VALUE for c in key)


def key_between(before: str | None, after: str | None) -> str:
    """A key strictly between ``before`` and ``after`` (``None``: open end).

    Raises ``ValueError`` when ``before >= after`` or a key is malformed.
    """
    low = before or ""
    if before is not None and not is_key(before):
        raise ValueError(f"not an order key: {before!r}")
    if after is not None and not is_key(after):
        raise ValueError(f"not an order key: {after!r}")
    if after is not None and low >= after:
        raise ValueError(f"order keys out of order: {before!r} >= {after!r}")
    if after is None and before is not None:
        return _increment(before)
    return _midpoint(low, after)


def _increment(key: str) -> str:
    """The next key after ``key``, so a run of appends (the common edit) walks through
    the free space instead of halving it: a key grows by one character per ~61 appends
    once the space above it is used up."""
    # Stripped trailing zeros made "U0" into "U"; count at two digits at least so the
    # appends after "Tz" go on with "U1", "U2", ... rather than jumping to "V".
    padded = key.ljust(max(len(key), 2), "0")
    for position in range(len(padded) - 1, -1, -1):
        value = _VALUE[padded[position]]
        if value < BASE - 1:
            return padded[:position] + DIGITS[value + 1]
    return padded + DIGITS[1]


def _midpoint(low: str, high: str | None) -> str:
    # Invariant: low < high (as digit strings, low padded with "0"), neither ends in "0".
    if high is not None:
        common = 0
        while common < len(high) and (low[common] if common < len(low) else "0") == high[common]:
            common += 1
        if common:
            return high[:common] + _midpoint(low[common:], high[common:])
    low_digit = _VALUE[low[0]] if low else 0
    high_digit = _VALUE[high[0]] if high is not None else BASE
    if high_digit - low_digit > 1:
        return DIGITS[(low_digit + high_digit) // 2]
    # Adjacent first digits: a longer high already lies above low's first digit alone.
    if high is not None and len(high) > 1:
        return high[0]
    return DIGITS[low_digit] + _midpoint(low[1:], None)


def spread_keys(count: int) -> list[str]:
    """``count`` increasing keys of equal width, evenly spaced, for a fresh list of siblings.

    Even spacing leaves room everywhere, so later inserts stay short.
    """
    if count <= 0:
        return []
    # The lower half of the space only: appends after the last key (the common edit)
    # then have half the space before any key grows.
    width = 1
    while BASE**width < (count + 1) * 8:
        width += 1
    step = BASE**width // 2 // (count + 1)
    return [_encode(step * (index + 1), width).rstrip("0") for index in range(count)]


def keys_between(before: str | None, after: str | None, count: int) -> list[str]:
    """``count`` increasing keys strictly between ``before`` and ``after``."""
    keys: list[str] = []
    if count <= 0:
        return keys
    # Bisect recursively so a run of inserts grows keys by log(count), not count.
    middle = key_between(before, after)
    left = count // 2
    keys.extend(keys_between(before, middle, left))
    keys.append(middle)
    keys.extend(keys_between(middle, after, count - left - 1))
    return keys


def _encode(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, BASE)
        digits.append(DIGITS[digit])
    return "".join(reversed(digits))
