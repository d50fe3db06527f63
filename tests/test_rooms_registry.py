"""The registry: shared loads, limits, unloading after the grace period, hooks, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Doc, Map

from core.errors import DiagramNotFound
from rooms.limits import Limits, RoomFull, TooManyRooms
from rooms.registry import RoomRegistry
from tests.test_rooms_support import TIMEOUT, Peer, content, loaded_doc, task


class Loader:
    """Loads ``loaded_doc`` per diagram; can be held at a gate or made to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures: list[BaseException] = []

    async def __call__(self, diagram_id: str) -> Doc[Any]:
        self.calls.append(diagram_id)
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        return loaded_doc("a")


class Unloads:
    def __init__(self, fail: bool = False) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.event = asyncio.Event()
        self.fail = fail
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, diagram_id: str, doc: Doc[Any]) -> None:
        await self.gate.wait()
        self.seen.append((diagram_id, content(doc)))
        self.event.set()
        if self.fail:
            raise OSError("snapshot store down")


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Let the other tasks run until ``predicate()`` holds (bounded by the timeout).

    For registry state no event announces (sessions waiting on a load, an entry closing);
    it checks after every turn of the loop, never sleeps for a guessed time.
    """
    async with asyncio.timeout(TIMEOUT):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0)


async def hold(peer: Peer, registry: RoomRegistry, diagram_id: str, release: asyncio.Event) -> None:
    async with peer.connect(registry, diagram_id):
        await peer.sync()
        await release.wait()


async def test_concurrent_joins_share_one_load_and_one_room() -> None:
    loader = Loader()
    loader.gate.clear()
    async with RoomRegistry(loader) as registry, asyncio.TaskGroup() as tasks:
        release = asyncio.Event()
        peers = [Peer(f"p{i}") for i in range(3)]
        for peer in peers:
            tasks.create_task(hold(peer, registry, "d", release))
        await wait_until(lambda: len(loader.calls) == 1 and len(registry) == 1)
        loader.gate.set()
        await wait_until(lambda: all(p.client is not None for p in peers))
        room = registry.room("d")
        assert room is not None and len(room.clients) == 3
        assert loader.calls == ["d"]
        await peers[0].edit(lambda doc: doc.get("elements", type=Map).__setitem__("n", task("N")))
        await peers[2].wait_for(lambda: "n" in peers[2].elements)
        release.set()


async def test_rooms_per_worker_and_clients_per_room_are_enforced() -> None:
    limits = Limits(rooms_per_worker=1, clients_per_room=1)
    async with RoomRegistry(Loader(), limits=limits) as registry, asyncio.TaskGroup() as tasks:
        release = asyncio.Event()
        first = Peer("first")
        tasks.create_task(hold(first, registry, "d", release))
        await wait_until(lambda: first.client is not None)
        for diagram_id, error in (("d", RoomFull), ("other", TooManyRooms)):
            refused = Peer("refused")
            with pytest.raises(error):
                async with refused.connect(registry, diagram_id):
                    pass
            assert refused.transport.close_code == 1013
        assert registry.metrics.joins_refused == 2
        release.set()


async def test_a_room_unloads_after_the_grace_period_with_the_hook_called() -> None:
    unloads = Unloads()
    limits = Limits(unload_grace_s=0.01)
    async with RoomRegistry(Loader(), limits=limits, on_unload=unloads) as registry:
        peer = Peer()
        async with peer.connect(registry, "d"):
            await peer.sync()
            await peer.edit(lambda doc: doc.get("elements", type=Map).__setitem__("n", task("N")))
        async with asyncio.timeout(TIMEOUT):
            await unloads.event.wait()
        (diagram_id, saved), *_ = unloads.seen
        assert diagram_id == "d"
        assert "n" in saved["elements"]
        await wait_until(lambda: len(registry) == 0)
        assert registry.room("d") is None
        assert registry.metrics.rooms_unloaded == 1


async def test_a_rejoin_within_the_grace_period_keeps_the_room() -> None:
    loader, unloads = Loader(), Unloads()
    limits = Limits(unload_grace_s=60)
    async with RoomRegistry(loader, limits=limits, on_unload=unloads) as registry:
        async with Peer("a").connect(registry, "d"):
            room = registry.room("d")
        async with Peer("b").connect(registry, "d"):
            assert registry.room("d") is room
        assert loader.calls == ["d"]
        assert unloads.seen == []
    assert [diagram_id for diagram_id, _ in unloads.seen] == ["d"]  # at shutdown


async def test_a_failing_unload_hook_is_logged_and_the_registry_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loader, unloads = Loader(), Unloads(fail=True)
    limits = Limits(unload_grace_s=0)
    async with RoomRegistry(loader, limits=limits, on_unload=unloads) as registry:
        async with Peer().connect(registry, "d"):
            pass
        await wait_until(lambda: len(registry) == 0)
        assert registry.metrics.hook_failures == 1
        assert "on_unload failed" in caplog.text
        peer = Peer()
        async with peer.connect(registry, "d"):
            await peer.sync()
        assert loader.calls == ["d", "d"]


async def test_a_join_during_unload_waits_and_opens_the_room_afresh() -> None:
    loader, unloads = Loader(), Unloads()
    unloads.gate.clear()
    limits = Limits(unload_grace_s=0)
    async with RoomRegistry(loader, limits=limits, on_unload=unloads) as registry:
        async with Peer().connect(registry, "d"):
            pass
        await wait_until(lambda: len(registry) == 1 and registry.room("d") is None)
        release = asyncio.Event()
        peer = Peer()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(hold(peer, registry, "d", release))
            for _ in range(10):
                await asyncio.sleep(0)
            assert peer.client is None  # waiting for the unload to finish
            unloads.gate.set()
            await wait_until(lambda: registry.room("d") is not None and peer.client is not None)
            assert loader.calls == ["d", "d"]
            release.set()


async def test_a_load_failure_reaches_the_joiner_and_the_next_join_retries() -> None:
    loader = Loader()
    loader.failures.append(DiagramNotFound("d"))
    async with RoomRegistry(loader) as registry:
        first = Peer()
        with pytest.raises(DiagramNotFound):
            async with first.connect(registry, "d"):
                pass
        assert first.transport.close_code == 4404
        assert registry.metrics.load_failures == 1
        loader.failures.append(OSError("database down"))
        second = Peer()
        with pytest.raises(OSError, match="database down"):
            async with second.connect(registry, "d"):
                pass
        assert second.transport.close_code == 1011
        third = Peer()
        async with third.connect(registry, "d"):
            await third.sync()
            assert "a" in third.elements


async def test_on_update_gets_the_diagram_id() -> None:
    published: list[tuple[str, str | None]] = []

    async def on_update(diagram_id: str, update: bytes, user_id: str | None) -> None:
        published.append((diagram_id, user_id))

    async with RoomRegistry(Loader(), on_update=on_update) as registry:
        peer = Peer("ann")
        async with peer.connect(registry, "d"):
            await peer.sync()
            await peer.edit(lambda doc: doc.get("elements", type=Map).__setitem__("n", task("N")))
    assert published == [("d", "ann")]


async def test_shutdown_closes_clients_with_1012_and_snapshots_every_room() -> None:
    unloads = Unloads()
    peers = {"d1": Peer("a"), "d2": Peer("b")}
    synced = {diagram_id: asyncio.Event() for diagram_id in peers}

    async def edge(registry: RoomRegistry, diagram_id: str) -> None:
        # As the WebSocket edge does: the session ends when the client is closed.
        peer = peers[diagram_id]
        async with peer.connect(registry, diagram_id):
            await peer.sync()
            synced[diagram_id].set()
            assert peer.client is not None
            await peer.client.wait_closed()

    async with (
        asyncio.TaskGroup() as tasks,
        RoomRegistry(Loader(), on_unload=unloads) as registry,
    ):
        for diagram_id in peers:
            tasks.create_task(edge(registry, diagram_id))
        async with asyncio.timeout(TIMEOUT):
            for event in synced.values():
                await event.wait()
        assert unloads.seen == []
    for peer in peers.values():
        assert (await peer.closed())[0] == 1012
    assert sorted(diagram_id for diagram_id, _ in unloads.seen) == ["d1", "d2"]
