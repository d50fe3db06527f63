"""Test support for the room tests: a Yjs peer on a real pycrdt ``Doc``, and a fake clock.

A :class:`Peer` behaves as y-websocket's provider does: it answers the server's sync step 1
with its step 2, applies every update it receives, and sends each of its own transactions as a
sync update. Messages travel through :class:`rooms.transport.MemoryTransport` and the room's
own ``receive``, so the room code runs as it does behind a socket. The few tests at the end
pin the helpers themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pycrdt import Doc, Map, TransactionEvent

from bpmn.document import DI, ELEMENTS, META, RAW
from rooms.client import Client, Role
from rooms.limits import Limits, Metrics
from rooms.protocol import (
    AuthMessage,
    AwarenessEntry,
    AwarenessMessage,
    Message,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    decode_message,
    encode_awareness,
    encode_message,
)
from rooms.registry import RoomRegistry
from rooms.room import Room
from rooms.transport import MemoryTransport

TIMEOUT = 5.0


def content(doc: Doc[Any]) -> dict[str, Any]:
    """The four schema roots as plain Python values, to compare documents."""
    return {name: doc.get(name, type=Map).to_py() for name in (META, ELEMENTS, DI, RAW)}


def task(name: str, **fields: Any) -> Map[Any]:
    """A valid ``elements`` entry."""
    value: dict[str, Any] = {
        "type": "bpmn:task",
        "parent": "",
        "order": "V",
        "attrs": Map({"name": name}),
        "text": Map(),
        "body": Map(),
    }
    value.update(fields)
    return Map(value)


def shape(element: str, x: float = 0.0) -> Map[Any]:
    """A valid ``di`` entry."""
    return Map({"type": "bpmndi:BPMNShape", "parent": "", "order": "V", "element": element,
                "attrs": Map(), "bounds": [x, 0.0, 100.0, 80.0]})  # fmt: skip


class Peer:
    """A Yjs client of a room. ``sink`` is how its messages reach the server."""

    def __init__(self, name: str = "peer") -> None:
        self.name = name
        self.doc: Doc[Any] = Doc()
        self.transport = MemoryTransport()
        self.received: list[Message] = []
        self.awareness: dict[int, AwarenessEntry] = {}
        self.awareness_messages = 0
        self.denied: list[str] = []
        self.client: Client | None = None
        self._sink: Callable[[bytes], Awaitable[None]] | None = None
        self._remote = False
        self._outgoing: list[bytes] = []
        self.doc.observe(self._on_transaction)

    def _on_transaction(self, event: TransactionEvent) -> None:
        if not self._remote:
            self._outgoing.append(event.update)

    @property
    def elements(self) -> Map[Any]:
        return self.doc.get(ELEMENTS, type=Map)

    @property
    def di(self) -> Map[Any]:
        return self.doc.get(DI, type=Map)

    async def send(self, data: bytes) -> None:
        assert self._sink is not None, "not connected"
        await self._sink(data)

    async def send_message(self, message: Message) -> None:
        await self.send(encode_message(message))

    async def edit(self, change: Callable[[Doc[Any]], object]) -> None:
        """Change the local document in one transaction and send it, as a provider does."""
        with self.doc.transaction():
            change(self.doc)
        await self.flush()

    async def flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        for update in outgoing:
            await self.send_message(SyncUpdate(update))

    async def set_awareness(self, client_id: int, clock: int, state: str) -> None:
        payload = encode_awareness([AwarenessEntry(client_id, clock, state)])
        await self.send_message(AwarenessMessage(payload))

    async def handle(self, data: bytes) -> None:
        message = decode_message(data)
        self.received.append(message)
        match message:
            case SyncStep1(vector):
                await self.send_message(SyncStep2(self.doc.get_update(vector)))
            case SyncStep2(update) | SyncUpdate(update):
                self._remote = True
                try:
                    self.doc.apply_update(update)
                finally:
                    self._remote = False
            case AwarenessMessage(payload):
                self.awareness_messages += 1
                for entry in decode_awareness(payload):
                    self.awareness[entry.client_id] = entry
            case AuthMessage(_, reason):
                self.denied.append(reason)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Handle what the server sends until ``predicate()`` holds (within ``TIMEOUT``)."""
        async with asyncio.timeout(TIMEOUT):
            while not predicate():
                await self.handle(await self.transport.receive())

    async def sync(self) -> None:
        """The provider's handshake: send step 1, handle messages until step 2 arrived."""
        await self.send_message(SyncStep1(self.doc.get_state()))
        await self.wait_for(lambda: any(isinstance(m, SyncStep2) for m in self.received))

    async def settle(self) -> None:
        """Handle what has already arrived, without waiting for more."""
        for data in self.transport.drain():
            await self.handle(data)

    async def closed(self) -> tuple[int, str]:
        async with asyncio.timeout(TIMEOUT):
            return await self.transport.wait_closed()

    @asynccontextmanager
    async def join(
        self, room: Room, *, role: Role = "editor", limits: Limits | None = None
    ) -> AsyncIterator[Peer]:
        """Join ``room`` directly (no registry), as the edge would with a session."""
        limits = limits or room.limits
        metrics = room.metrics
        async with Client(
            self.transport, user_id=self.name, role=role, limits=limits, metrics=metrics
        ) as client:
            self.client = client
            await room.join(client)
            self._sink = lambda data: room.receive(client, data)
            try:
                yield self
            finally:
                await room.leave(client)

    @asynccontextmanager
    async def connect(
        self, registry: RoomRegistry, diagram_id: str, *, role: Role = "editor"
    ) -> AsyncIterator[Peer]:
        async with registry.connect(
            diagram_id, self.transport, user_id=self.name, role=role
        ) as session:
            self.client = session.client
            self._sink = session.receive
            yield self


async def converged(room: Room, *peers: Peer) -> None:
    """Wait until every peer holds exactly the room's document."""
    for peer in peers:
        await peer.wait_for(lambda peer=peer: content(peer.doc) == content(room.doc))


def loaded_doc(*names: str) -> Doc[Any]:
    """A server document with one task per name (and its shape)."""
    doc: Doc[Any] = Doc()
    with doc.transaction():
        meta = doc.get(META, type=Map)
        meta["schema"] = 1
        meta["tag"] = "bpmn:definitions"
        meta["definitions"] = Map({"id": "defs"})
        meta["namespaces"] = [["bpmn", "http://www.omg.org/spec/BPMN/20100524/MODEL"]]
        for index, name in enumerate(names):
            doc.get(ELEMENTS, type=Map)[name] = task(name)
            doc.get(DI, type=Map)[f"{name}_di"] = shape(name, x=100.0 * index)
    return doc


# --- the helpers themselves -------------------------------------------------------------------


async def test_memory_transport_delivers_in_order_and_closes_once() -> None:
    transport = MemoryTransport()
    await transport.send(b"a")
    await transport.send(b"b")
    await transport.close(4400, "bad")
    await transport.close(1000, "again")
    assert transport.drain() == [b"a", b"b"]
    assert await transport.wait_closed() == (4400, "bad")


async def test_memory_transport_pause_blocks_send_until_closed() -> None:
    transport = MemoryTransport()
    transport.pause()
    sending = asyncio.create_task(transport.send(b"x"))
    await asyncio.sleep(0)
    assert not sending.done()
    await transport.close(1013, "slow")
    with pytest.raises(ConnectionError):
        await sending


async def test_peer_round_trip_through_a_room() -> None:
    async with Room("d", loaded_doc("a"), metrics=Metrics()) as room:
        peer = Peer()
        async with peer.join(room):
            await peer.sync()
            assert content(peer.doc) == content(room.doc)
