"""The Yjs sync protocol in a room: handshake, convergence, late joiners, viewers, hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pycrdt import Doc, Map

from rooms.limits import Metrics
from rooms.protocol import (
    AuthMessage,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from rooms.room import EMPTY_STATE_VECTOR, READ_ONLY_REASON, Room
from tests.test_rooms_support import Peer, content, converged, loaded_doc, task


async def test_join_sends_step1_with_the_server_state_vector() -> None:
    async with Room("d", loaded_doc("a")) as room:
        peer = Peer()
        async with peer.join(room):
            first = decode_message(await peer.transport.receive())
            assert first == SyncStep1(room.doc.get_state())
            assert peer.transport.drain() == []  # no awareness yet: nothing else


async def test_three_editors_converge_after_concurrent_edits() -> None:
    async with Room("d", loaded_doc("a", "b")) as room:
        alice, bob, carol = Peer("alice"), Peer("bob"), Peer("carol")
        async with alice.join(room), bob.join(room), carol.join(room):
            for peer in (alice, bob, carol):
                await peer.sync()
            # Concurrent: nobody sees the others' edits before making their own.
            with alice.doc.transaction():
                alice.elements["a"]["attrs"]["name"] = "Alice's"
                alice.elements["x"] = task("X")
            with bob.doc.transaction():
                bob.elements["b"]["attrs"]["name"] = "Bob's"
                del bob.elements["a"]["attrs"]["name"]
            with carol.doc.transaction():
                carol.elements["y"] = task("Y")
                carol.di["a_di"]["bounds"] = [1.0, 2.0, 3.0, 4.0]
            await asyncio.gather(alice.flush(), bob.flush(), carol.flush())
            await converged(room, alice, bob, carol)
            elements = room.doc.get("elements", type=Map)
            assert {"a", "b", "x", "y"} <= set(elements.keys())
            assert elements["b"]["attrs"]["name"] == "Bob's"


async def test_updates_are_not_echoed_to_their_sender() -> None:
    async with Room("d", loaded_doc("a")) as room:
        alice, bob = Peer("alice"), Peer("bob")
        async with alice.join(room), bob.join(room):
            await alice.sync()
            await bob.sync()
            await alice.edit(lambda doc: doc.get("elements", type=Map).__setitem__("n", task("N")))
            await converged(room, bob)
            await alice.settle()
            assert not any(isinstance(m, SyncUpdate) for m in alice.received)


async def test_broadcast_is_the_transactions_own_update_not_the_whole_state() -> None:
    async with Room("d", loaded_doc(*[f"t{i}" for i in range(50)])) as room:
        alice, bob = Peer("alice"), Peer("bob")
        async with alice.join(room), bob.join(room):
            await alice.sync()
            await bob.sync()
            await alice.edit(
                lambda doc: doc.get("elements", type=Map)["t1"]["attrs"].__setitem__("name", "z")
            )
            await converged(room, bob)
            updates = [m for m in bob.received if isinstance(m, SyncUpdate)]
            assert len(updates) == 1
            assert len(updates[0].update) < len(room.doc.get_update()) / 10


async def test_late_joiner_gets_the_full_state_and_the_message_is_cached() -> None:
    metrics = Metrics()
    async with Room("d", loaded_doc("a"), metrics=metrics) as room:
        alice = Peer("alice")
        async with alice.join(room):
            await alice.sync()
            await alice.edit(lambda doc: doc.get("elements", type=Map).__setitem__("n", task("N")))
            encodes = metrics.full_state_encodes  # alice was an empty joiner too
            late1, late2 = Peer("late1"), Peer("late2")
            async with late1.join(room), late2.join(room):
                await late1.sync()
                await late2.sync()
                assert content(late1.doc) == content(room.doc) == content(late2.doc)
                step2s = [
                    data
                    for peer in (late1, late2)
                    for data in [encode_message(m) for m in peer.received]
                    if isinstance(decode_message(data), SyncStep2)
                ]
                assert step2s[0] == step2s[1]
                assert metrics.full_state_encodes == encodes + 1  # once for both
                # A change invalidates it; the next empty joiner gets a fresh encoding.
                await alice.edit(
                    lambda doc: doc.get("elements", type=Map).__setitem__("m", task("M"))
                )
                await converged(room, late1)
                late3 = Peer("late3")
                async with late3.join(room):
                    await late3.sync()
                    assert metrics.full_state_encodes == encodes + 2
                    assert content(late3.doc) == content(room.doc)


async def test_a_client_with_state_gets_only_what_it_lacks() -> None:
    doc = loaded_doc(*[f"t{i}" for i in range(30)])
    async with Room("d", doc) as room:
        peer = Peer()
        peer.doc.apply_update(doc.get_update())
        async with peer.join(room):
            await peer.sync()
            step2 = next(m for m in peer.received if isinstance(m, SyncStep2))
            assert len(step2.update) < 20


async def test_viewer_updates_are_refused_counted_and_told_once() -> None:
    metrics = Metrics()
    async with Room("d", loaded_doc("a"), metrics=metrics) as room:
        viewer, editor = Peer("viewer"), Peer("editor")
        async with viewer.join(room, role="viewer"), editor.join(room):
            await viewer.sync()
            await editor.sync()
            before = content(room.doc)
            for name in ("v1", "v2"):
                await viewer.edit(
                    lambda doc, name=name: doc.get("elements", type=Map).__setitem__(
                        name, task(name)
                    )
                )
            await viewer.wait_for(lambda: bool(viewer.denied))
            assert content(room.doc) == before
            assert metrics.viewer_updates_refused == 2
            assert viewer.denied == [READ_ONLY_REASON]
            assert viewer.client is not None and not viewer.client.closed
            # The viewer still receives the editors' changes.
            await editor.edit(lambda doc: doc.get("elements", type=Map).__setitem__("e", task("E")))
            await viewer.wait_for(lambda: "e" in viewer.elements)
            await viewer.settle()
            assert [m for m in viewer.received if isinstance(m, AuthMessage)] == [
                AuthMessage(0, READ_ONLY_REASON)
            ]


async def test_a_viewers_handshake_answer_is_not_an_edit() -> None:
    metrics = Metrics()
    doc = loaded_doc("a", "b")
    with doc.transaction():
        del doc.get("elements", type=Map)["b"]  # the state now has deletions
    async with Room("d", doc, metrics=metrics) as room:
        viewer = Peer("viewer")
        viewer.doc.apply_update(doc.get_update())
        async with viewer.join(room, role="viewer"):
            await viewer.sync()  # answers the server's step 1 with a step 2 of deletions
            await viewer.settle()
            assert metrics.viewer_updates_refused == 0
            assert viewer.denied == []


async def test_a_viewers_handshake_with_offline_edits_is_refused() -> None:
    metrics = Metrics()
    async with Room("d", loaded_doc("a"), metrics=metrics) as room:
        viewer = Peer("viewer")
        viewer.doc.get("elements", type=Map)["offline"] = task("Offline")
        async with viewer.join(room, role="viewer"):
            await viewer.sync()
            await viewer.wait_for(lambda: bool(viewer.denied))
            assert "offline" not in room.doc.get("elements", type=Map)
            assert metrics.viewer_updates_refused == 1


async def test_on_update_gets_each_applied_change_with_its_author() -> None:
    seen: list[tuple[bytes, str | None]] = []

    async def on_update(update: bytes, user_id: str | None) -> None:
        seen.append((update, user_id))

    async with Room("d", loaded_doc("a"), on_update=on_update) as room:
        alice = Peer("alice")
        async with alice.join(room):
            await alice.sync()
            await alice.edit(lambda doc: doc.get("elements", type=Map).__setitem__("n", task("N")))
            # The same update again changes nothing, so it is not published again.
            await alice.send_message(SyncUpdate(alice.doc.get_update()))
        assert [user for _, user in seen] == ["alice"]
        replay: Doc[Any] = Doc()
        replay.apply_update(loaded_doc("a").get_update())
        for update, _ in seen:
            replay.apply_update(update)
        assert "n" in replay.get("elements", type=Map)


async def test_no_client_sees_a_change_before_on_update_made_it_durable() -> None:
    logged = asyncio.Event()
    release = asyncio.Event()

    async def on_update(update: bytes, user_id: str | None) -> None:
        logged.set()
        await release.wait()  # the update log's append, taking its time

    async with Room("d", loaded_doc("a"), on_update=on_update) as room:
        alice, bob = Peer("alice"), Peer("bob")
        async with alice.join(room), bob.join(room):
            await alice.sync()
            await bob.sync()
            sending = asyncio.create_task(
                alice.edit(lambda doc: doc.get("elements", type=Map).__setitem__("n", task("N")))
            )
            await logged.wait()
            await asyncio.sleep(0.05)
            await bob.settle()
            assert "n" not in bob.elements
            release.set()
            await sending
            await bob.wait_for(lambda: "n" in bob.elements)


async def test_a_failing_on_update_closes_only_the_sender() -> None:
    async def on_update(update: bytes, user_id: str | None) -> None:
        if user_id == "alice":
            raise OSError("the stream is down")

    metrics = Metrics()
    async with Room("d", loaded_doc("a"), on_update=on_update, metrics=metrics) as room:
        alice, bob = Peer("alice"), Peer("bob")
        async with alice.join(room), bob.join(room):
            await alice.sync()
            await bob.sync()
            await alice.edit(lambda doc: doc.get("elements", type=Map).__setitem__("n", task("N")))
            assert (await alice.closed())[0] == 1011
            await converged(room, bob)  # applied and broadcast all the same
            await bob.edit(lambda doc: doc.get("elements", type=Map).__setitem__("m", task("M")))
            assert "m" in room.doc.get("elements", type=Map)
            assert metrics.hook_failures == 1


async def test_remote_and_server_changes_reach_every_local_client() -> None:
    published: list[str | None] = []

    async def on_update(update: bytes, user_id: str | None) -> None:
        published.append(user_id)

    async with Room("d", loaded_doc("a"), on_update=on_update) as room:
        alice = Peer("alice")
        async with alice.join(room):
            await alice.sync()
            other: Doc[Any] = Doc()
            other.apply_update(room.doc.get_update())
            state = other.get_state()
            other.get("elements", type=Map)["remote"] = task("R")
            room.apply_remote(other.get_update(state))
            await alice.wait_for(lambda: "remote" in alice.elements)
            update = await room.change(
                lambda doc: doc.get("elements", type=Map).__setitem__("rest", task("S")),
                user_id="rest-user",
            )
            assert update is not None
            await alice.wait_for(lambda: "rest" in alice.elements)
            assert await room.change(lambda doc: None) is None
        # Remote updates were published by their own worker; server changes are published.
        assert published == ["rest-user"]


async def test_a_failing_server_change_still_shares_what_it_changed() -> None:
    async with Room("d", loaded_doc("a")) as room:
        alice = Peer("alice")
        async with alice.join(room):
            await alice.sync()

            def half_done(doc: Doc[Any]) -> None:
                doc.get("elements", type=Map)["half"] = task("H")
                raise LookupError("the fold broke halfway")

            with pytest.raises(LookupError):
                await room.change(half_done)
            await alice.wait_for(lambda: "half" in alice.elements)


async def test_auth_messages_from_clients_are_ignored() -> None:
    async with Room("d", loaded_doc("a")) as room:
        peer = Peer()
        async with peer.join(room):
            await peer.send_message(AuthMessage(0, "hello"))
            await peer.sync()
            assert peer.client is not None and not peer.client.closed


async def test_empty_state_vector_constant_matches_pycrdt() -> None:
    empty: Doc[Any] = Doc()
    assert empty.get_state() == EMPTY_STATE_VECTOR
    assert isinstance(empty.get("x", type=Map), Map)
