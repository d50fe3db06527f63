"""Fractional order keys: always a key between two others, never a renumbering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpmn.order import DIGITS, is_key, key_between, keys_between, spread_keys

keys = st.text(alphabet=DIGITS, min_size=1, max_size=8).filter(is_key)


@given(keys, keys)
def test_a_key_fits_between_any_two_distinct_keys(a: str, b: str) -> None:
    if a == b:
        return
    low, high = min(a, b), max(a, b)
    middle = key_between(low, high)
    assert low < middle < high
    assert is_key(middle)


@given(keys)
def test_open_ends(a: str) -> None:
    assert key_between(None, a) < a
    assert key_between(a, None) > a
    assert is_key(key_between(None, a)) and is_key(key_between(a, None))


@given(st.integers(min_value=0, max_value=3000))
def test_spread_keys_increase_and_stay_short(count: int) -> None:
    spread = spread_keys(count)
    assert len(spread) == count
    assert spread == sorted(set(spread))
    assert all(is_key(k) for k in spread)
    assert all(len(k) <= 4 for k in spread)


@given(st.one_of(st.none(), keys), st.one_of(st.none(), keys), st.integers(0, 200))
def test_keys_between_fill_a_gap_in_order(a: str | None, b: str | None, count: int) -> None:
    if a is not None and b is not None and a >= b:
        return
    made = keys_between(a, b, count)
    bounded = ([a] if a else []) + made + ([b] if b else [])
    assert bounded == sorted(set(bounded))
    assert len(made) == count


def test_repeated_appends_and_inserts_stay_short() -> None:
    last = None
    for _ in range(1000):
        last = key_between(last, None)
    assert last is not None and len(last) <= 20, last
    after_spread = spread_keys(50)[-1]
    for _ in range(1000):
        after_spread = key_between(after_spread, None)
    assert len(after_spread) <= 16
    low, high = "a", "b"
    for _ in range(100):
        high = key_between(low, high)
    assert len(high) <= 25


@pytest.mark.parametrize(("a", "b"), [("b", "a"), ("a", "a"), ("a0", "b"), ("", "b"), ("a!", None)])
def test_bad_bounds_are_refused(a: str, b: str | None) -> None:
    with pytest.raises(ValueError, match="order key"):
        key_between(a, b)
