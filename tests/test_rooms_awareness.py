"""Awareness: the y-protocols rules, ownership, expiry, and relaying through a room."""

from __future__ import annotations

import json

import pytest

from rooms.awareness import AwarenessRefused, AwarenessStates, Coalescer
from rooms.limits import Limits, Metrics
from rooms.protocol import (
    AwarenessEntry,
    AwarenessMessage,
    MalformedMessage,
    QueryAwareness,
    SyncStep1,
    decode_awareness,
    decode_message,
)
from rooms.room import Room
from tests.fixtures.clock import FakeClock
from tests.test_rooms_support import Peer, loaded_doc

A = "alice"
B = "bob"


def states(clock: FakeClock | None = None, **kwargs: int) -> AwarenessStates:
    options = {"max_state_bytes": 1000, "ids_per_owner": 4} | kwargs
    return AwarenessStates(timeout_s=30.0, clock=clock or FakeClock(), **options)


def entry(client_id: int, clock: int, state: object) -> AwarenessEntry:
    return AwarenessEntry(client_id, clock, "null" if state is None else json.dumps(state))


# --- the rules, without a room ----------------------------------------------------------------


def test_a_higher_clock_wins_and_an_equal_clock_may_only_remove() -> None:
    aw = states()
    assert aw.apply(A, [entry(1, 1, {"x": 1})]) == [entry(1, 1, {"x": 1})]
    assert aw.apply(A, [entry(1, 1, {"x": 2})]) == []  # same clock, not a removal
    assert aw.apply(A, [entry(1, 0, {"x": 3})]) == []  # older
    assert aw.apply(A, [entry(1, 2, {"x": 4})]) == [entry(1, 2, {"x": 4})]
    assert aw.apply(A, [entry(1, 2, None)]) == [entry(1, 2, None)]
    assert aw.states() == []
    assert aw.apply(A, [entry(1, 2, {"x": 5})]) == []  # a stale update cannot revive it


def test_json_null_with_spaces_is_a_removal_and_bad_json_is_refused() -> None:
    aw = states()
    aw.apply(A, [entry(1, 1, {})])
    assert aw.apply(A, [AwarenessEntry(1, 2, " null ")]) == [entry(1, 2, None)]
    for bad in ("{", "NaN", "Infinity", "[1,]", ""):
        with pytest.raises(MalformedMessage):
            aw.apply(A, [AwarenessEntry(2, 1, bad)])
    assert len(aw) == 0


def test_limits_on_state_size_and_ids_per_connection() -> None:
    aw = states(max_state_bytes=20, ids_per_owner=2)
    with pytest.raises(AwarenessRefused):
        aw.apply(A, [entry(1, 1, {"long": "x" * 30})])
    with pytest.raises(AwarenessRefused):
        aw.apply(A, [AwarenessEntry(1, 1, json.dumps("é" * 15, ensure_ascii=False))])
    aw.apply(A, [entry(1, 1, {}), entry(2, 1, {})])
    with pytest.raises(AwarenessRefused):
        aw.apply(A, [entry(3, 1, {})])
    assert aw.owned_by(A) == {1, 2}


def test_removing_an_owner_removes_its_ids_with_the_next_clock() -> None:
    aw = states()
    aw.apply(A, [entry(1, 5, {"a": 1}), entry(2, 1, {"a": 2})])
    aw.apply(B, [entry(3, 1, {"b": 1})])
    aw.apply(B, [entry(2, 2, {"taken": True})])  # id 2 moved to bob
    assert aw.remove_owner(A) == [entry(1, 6, None)]
    assert {e.client_id for e in aw.states()} == {2, 3}
    assert aw.remove_owner(A) == []
    assert aw.remove_owner(B) == [entry(2, 3, None), entry(3, 2, None)]


def test_states_not_renewed_in_time_expire_and_old_clocks_are_forgotten_later() -> None:
    clock = FakeClock()
    aw = states(clock)
    aw.apply(A, [entry(1, 1, {}), entry(2, 1, {})])
    clock.advance(20)
    aw.apply(A, [entry(2, 2, {})])  # renewed
    clock.advance(15)
    assert aw.expire() == [entry(1, 2, None)]
    assert aw.owned_by(A) == {2}
    clock.advance(31)
    assert aw.expire() == [entry(2, 3, None)]
    clock.advance(31)
    assert aw.expire() == []
    # Everything forgotten: the ids may start again from any clock.
    assert aw.apply(A, [entry(1, 1, {})]) == [entry(1, 1, {})]


def test_the_coalescer_keeps_the_latest_entry_per_client() -> None:
    pending = Coalescer()
    assert not pending
    pending.add([entry(1, 1, {"x": 1}), entry(2, 1, {})])
    pending.add([entry(1, 2, {"x": 2})])
    assert pending.take() == [entry(1, 2, {"x": 2}), entry(2, 1, {})]
    assert not pending
    assert pending.take() == []


# --- in a room ---------------------------------------------------------------------------------


async def test_awareness_is_relayed_coalesced_and_removed_on_leave() -> None:
    metrics = Metrics()
    limits = Limits(awareness_coalesce_s=0.05)
    async with Room("d", loaded_doc("a"), limits=limits, metrics=metrics) as room:
        alice, bob = Peer("alice"), Peer("bob")
        async with bob.join(room):
            await bob.sync()
            async with alice.join(room):
                await alice.sync()
                for move in range(50):  # many cursor moves within one window
                    await alice.set_awareness(7, move + 1, json.dumps({"cursor": move}))
                await bob.wait_for(lambda: 7 in bob.awareness)
                assert bob.awareness[7] == AwarenessEntry(7, 50, json.dumps({"cursor": 49}))
                assert bob.awareness_messages == 1
                assert metrics.awareness_flushes == 1
                await alice.wait_for(lambda: 7 in alice.awareness)  # the sender gets it too
            # alice left: her id is removed for everyone, with the next clock.
            await bob.wait_for(lambda: bob.awareness[7].removed)
            assert bob.awareness[7].clock == 51


async def test_a_joiner_receives_the_current_states_and_query_gets_them_all() -> None:
    async with Room("d", loaded_doc("a")) as room:
        alice, bob = Peer("alice"), Peer("bob")
        async with alice.join(room):
            await alice.sync()
            await alice.set_awareness(7, 1, '{"user":"alice"}')
            async with bob.join(room):
                first = decode_message(await bob.transport.receive())
                second = decode_message(await bob.transport.receive())
                assert isinstance(first, SyncStep1)
                assert isinstance(second, AwarenessMessage)
                assert decode_awareness(second.payload) == [
                    AwarenessEntry(7, 1, '{"user":"alice"}')
                ]
                await bob.send_message(QueryAwareness())
                await bob.wait_for(lambda: 7 in bob.awareness)
                assert bob.awareness[7].state == '{"user":"alice"}'


async def test_viewers_may_send_awareness() -> None:
    async with Room("d", loaded_doc("a")) as room:
        viewer, editor = Peer("viewer"), Peer("editor")
        async with viewer.join(room, role="viewer"), editor.join(room):
            await viewer.set_awareness(9, 1, "{}")
            await editor.wait_for(lambda: 9 in editor.awareness)


async def test_bad_awareness_closes_only_its_sender() -> None:
    async with Room("d", loaded_doc("a")) as room:
        bad, good = Peer("bad"), Peer("good")
        async with bad.join(room), good.join(room):
            await bad.set_awareness(1, 1, "{not json")
            assert (await bad.closed())[0] == 4400
            await good.set_awareness(2, 1, "{}")
            await good.wait_for(lambda: 2 in good.awareness)
            assert 1 not in good.awareness


async def test_expired_states_are_removed_for_everyone() -> None:
    clock = FakeClock()
    async with Room("d", loaded_doc("a"), clock=clock) as room:
        alice, bob = Peer("alice"), Peer("bob")
        async with alice.join(room), bob.join(room):
            await alice.set_awareness(7, 1, "{}")
            await bob.wait_for(lambda: 7 in bob.awareness)
            clock.advance(31)
            room.expire_awareness()
            await bob.wait_for(lambda: bob.awareness[7].removed)
