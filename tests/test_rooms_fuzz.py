"""Fuzzing a live room: arbitrary bytes and mutated valid messages from one client.

Whatever one client sends, the room survives, only that client may be closed (with a code that
blames its input), the document stays readable, and the other clients still converge.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from bpmn.document import BAD_ENTRY, read
from rooms.client import Role
from rooms.limits import Limits, Metrics
from rooms.protocol import (
    AwarenessEntry,
    AwarenessMessage,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    encode_awareness,
    encode_message,
)
from rooms.room import Room
from tests.test_rooms_support import Peer, content, converged, loaded_doc, shape, task

LIMITS = Limits(max_message_bytes=4096, byte_burst=4096)
INPUT_CODES = {4400, 1009, 1013}
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _base() -> Doc[Any]:
    return loaded_doc("a", "b", "c")


def _valid_messages() -> list[bytes]:
    """Messages a real client could send to a room holding ``_base()``."""
    server = _base()
    client: Doc[Any] = Doc()
    client.apply_update(server.get_update())
    state = client.get_state()
    with client.transaction():
        elements = client.get("elements", type=Map)
        elements["n"] = task("N")
        elements["a"]["attrs"]["name"] = "renamed"
        del elements["b"]
        client.get("di", type=Map)["n_di"] = shape("n", x=5.0)
    update = client.get_update(state)
    awareness = encode_awareness([AwarenessEntry(42, 3, '{"user":{"name":"x"},"cursor":[1,2]}')])
    return [
        encode_message(SyncUpdate(update)),
        encode_message(SyncStep2(client.get_update())),
        encode_message(SyncStep1(client.get_state())),
        encode_message(SyncStep1(b"\x00")),
        encode_message(AwarenessMessage(awareness)),
        encode_message(QueryAwareness()),
    ]


VALID = _valid_messages()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and data:
            del data[position]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


async def _survives(messages: list[bytes], role: Role = "editor") -> None:
    metrics = Metrics()
    async with Room("fuzz", _base(), limits=LIMITS, metrics=metrics) as room:
        bad, good, witness = Peer("bad"), Peer("good"), Peer("witness")
        async with bad.join(room, role=role), good.join(room), witness.join(room):
            await good.sync()
            await witness.sync()
            for data in messages:
                await bad.send(data)
            assert bad.client is not None
            if bad.client.closed:
                assert bad.client.close_code in INPUT_CODES, bad.client.close_reason
            assert not room.failed
            # Nothing a client sends leaves an entry that cannot be read.
            assert [w for w in read(room.doc).warnings if w.code == BAD_ENTRY] == []
            # The others go on editing and converge.
            await good.edit(lambda doc: doc.get("elements", type=Map).__setitem__("z", task("Z")))
            await converged(room, good, witness)
            assert "z" in witness.elements
            assert content(good.doc) == content(room.doc)


@FUZZ
@given(st.lists(st.binary(max_size=600), min_size=1, max_size=4))
async def test_arbitrary_bytes_close_only_the_sender(messages: list[bytes]) -> None:
    await _survives(messages)


@pytest.mark.parametrize("role", ["editor", "viewer"])
@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=4))
async def test_mutated_valid_messages_close_only_the_sender(
    role: Role, messages: list[bytes]
) -> None:
    await _survives(messages, role)


async def test_the_valid_messages_are_valid() -> None:
    async with Room("fuzz", _base(), limits=LIMITS) as room:
        peer = Peer()
        async with peer.join(room):
            for data in VALID:
                await peer.send(data)
            assert peer.client is not None and not peer.client.closed
            assert "n" in room.doc.get("elements", type=Map)
