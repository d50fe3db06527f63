"""The y-protocols codec: round trips, known bytes, and arbitrary input never crashing it."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms.protocol import (
    MAX_SAFE_INTEGER,
    AuthMessage,
    AwarenessEntry,
    AwarenessMessage,
    MalformedMessage,
    Message,
    QueryAwareness,
    Reader,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    decode_message,
    encode_awareness,
    encode_message,
    write_varuint,
)

blobs = st.binary(max_size=300)
messages = st.one_of(
    st.builds(SyncStep1, blobs),
    st.builds(SyncStep2, blobs),
    st.builds(SyncUpdate, blobs),
    st.builds(AwarenessMessage, blobs),
    st.just(QueryAwareness()),
    st.builds(AuthMessage, st.integers(0, 5), st.text(max_size=40)),
)
entries = st.builds(
    AwarenessEntry,
    st.integers(0, MAX_SAFE_INTEGER),
    st.integers(0, 2**32),
    st.one_of(st.just("null"), st.text(max_size=60)),
)


@given(st.integers(0, MAX_SAFE_INTEGER))
def test_varuint_round_trip(value: int) -> None:
    assert Reader(write_varuint(value)).varuint() == value


@given(messages)
def test_message_round_trip(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


@given(st.lists(entries, max_size=8))
def test_awareness_round_trip(items: list[AwarenessEntry]) -> None:
    assert decode_awareness(encode_awareness(items)) == items


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        decode_message(data)
    with contextlib.suppress(MalformedMessage):
        decode_awareness(data)


@given(messages, st.data())
def test_truncated_or_extended_messages_are_malformed(
    message: Message, data: st.DataObject
) -> None:
    encoded = encode_message(message)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(MalformedMessage):
        decode_message(encoded[:cut])
    with pytest.raises(MalformedMessage):
        decode_message(encoded + b"\x00")


def test_known_bytes_match_y_protocols() -> None:
    # y-protocols: writeSyncStep1 of an empty doc is [0, 0, 1, 0]; a 300-byte update
    # has its length as the varuint [0xAC, 0x02].
    assert encode_message(SyncStep1(b"\x00")) == bytes([0, 0, 1, 0])
    assert encode_message(SyncUpdate(b"x" * 300))[:4] == bytes([0, 2, 0xAC, 0x02])
    assert encode_message(QueryAwareness()) == bytes([3])
    assert encode_message(AuthMessage(0, "no")) == bytes([2, 0, 2]) + b"no"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x09", b"\x00\x07\x00", b"\x00\x00\x05ab", b"\x80" * 9, b"\xff" * 8 + b"\x01"],
)
def test_malformed_examples(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(data)
