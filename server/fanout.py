"""Rooms on this worker, joined to the same rooms on other workers through the bus.

A room opening here subscribes to its channel *before* its document is loaded; what
arrives during the load is kept and applied once the document exists (updates are
idempotent and commute, so order and duplicates are harmless; gaps are not, and the
update log closes them). From then on:

- updates from other workers are applied to the document (the room relays them to
  its clients) and make the room's snapshotter pending: if their worker dies before
  writing a version, a worker still holding the room writes it;
- awareness crosses in both directions and expires like local awareness, so a dead
  worker's clients disappear from everyone's presence after the timeout;
- after a reconnect (messages may be lost) the room catches up from the update log,
  sends what it accepted but could not log, and asks the others for what it lacks
  with its state vector; they answer with exactly that, as Yjs sync does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc

from core.errors import InvalidInput
from rooms.client import CloseCode
from rooms.protocol import AwarenessEntry, encode_awareness
from rooms.room import Room
from rooms.validation import adds_content, state_vector
from server.bus import Bus, BusMessage, Kind
from server.journal import Journal
from server.snapshots import Snapshotter

log = logging.getLogger(__name__)

RESET_REASON = "the document was reset; reload it"


@dataclass(eq=False)
class _Link:
    key: str
    fanout: Fanout
    doc: Doc[Any] | None = None
    room: Room | None = None
    early: list[BusMessage] = field(default_factory=list)

    async def received(self, message: BusMessage) -> None:
        await self.fanout.received(self, message)

    async def resync(self) -> None:
        await self.fanout.resync(self)


class Fanout:
    def __init__(self, bus: Bus, snapshots: Snapshotter) -> None:
        self.bus = bus
        self._snapshots = snapshots
        self._links: dict[str, _Link] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Logs and publishes updates that come from no client here (set once built).
        self.journal: Journal | None = None

    # --- a room's life on this worker ----------------------------------------------------------

    async def opening(self, key: str) -> None:
        """Before the room's document loads: subscribe, and keep what arrives."""
        link = _Link(key, self)
        self._links[key] = link
        try:
            await self.bus.join(key, link)
        except BaseException:
            self._links.pop(key, None)
            raise

    def loaded(self, key: str, doc: Doc[Any]) -> None:
        """The document exists: apply what arrived while it loaded."""
        link = self._links.get(key)
        if link is None:
            return
        link.doc = doc
        early, link.early = link.early, []
        for message in early:
            self._apply_update(link, message)

    async def opened(self, key: str, room: Room) -> None:
        """The room takes clients: awareness can flow; ask for the others' presence."""
        link = self._links.get(key)
        if link is None:
            return
        link.room = room
        await self._publish(BusMessage(Kind.QUERY_AWARENESS, key, self.bus.worker_id))

    async def closed(self, key: str) -> None:
        if self._links.pop(key, None) is not None:
            await self.bus.leave(key)

    async def __aenter__(self) -> Fanout:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- outgoing ------------------------------------------------------------------------------

    async def publish_update(self, key: str, update: bytes, position: str | None) -> None:
        await self._publish(BusMessage(Kind.UPDATE, key, self.bus.worker_id, update, position))

    async def reset(self, key: str, room: Room | None) -> None:
        """The document of room ``key`` was replaced: close its clients here and elsewhere."""
        if room is not None:
            room.close_clients(int(CloseCode.DOCUMENT_RESET), RESET_REASON)
        await self._publish(BusMessage(Kind.RESET, key, self.bus.worker_id))

    def publish_awareness(self, key: str, entries: list[AwarenessEntry]) -> None:
        message = BusMessage(Kind.AWARENESS, key, self.bus.worker_id, encode_awareness(entries))
        self._spawn(self._publish(message))

    async def _publish(self, message: BusMessage) -> None:
        await self.bus.publish(message)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- incoming ------------------------------------------------------------------------------

    async def received(self, link: _Link, message: BusMessage) -> None:
        match message.kind:
            case Kind.UPDATE:
                if link.doc is None:
                    link.early.append(message)
                else:
                    self._apply_update(link, message)
            case Kind.AWARENESS:
                if link.room is not None:
                    try:
                        link.room.apply_remote_awareness(message.origin, message.payload)
                    except InvalidInput:
                        log.warning(
                            "room %s: bad awareness from worker %s", link.key, message.origin
                        )
            case Kind.QUERY_AWARENESS:
                if link.room is not None and (states := link.room.awareness_states()):
                    self.publish_awareness(link.key, states)
            case Kind.RESYNC:
                if link.doc is not None:
                    await self._answer_resync(link, message.payload)
            case Kind.RESET:
                if link.room is not None:
                    link.room.close_clients(int(CloseCode.DOCUMENT_RESET), RESET_REASON)

    def _apply_update(self, link: _Link, message: BusMessage) -> None:
        assert link.doc is not None
        try:
            # A room observing the document relays the change to its clients.
            link.doc.apply_update(message.payload)
        except (ValueError, RuntimeError):
            log.error("room %s: an update from worker %s does not apply", link.key, message.origin)
            return
        self._spawn(self._snapshots.remote_update(link.key, message.position))

    async def _answer_resync(self, link: _Link, vector: bytes) -> None:
        assert link.doc is not None
        try:
            missing = link.doc.get_update(vector)
            known = state_vector(vector)
        except (ValueError, InvalidInput):
            return
        if adds_content(missing, known) and self.journal is not None:
            await self.journal.share(link.key, missing)

    async def resync(self, link: _Link) -> None:
        """After lost messages: catch up from the log, then trade what each side lacks."""
        if link.doc is None:
            return
        await self._snapshots.catch_up(link.key)
        if self.journal is not None:
            # What this worker accepted but could not log is sent with its resync.
            await self.journal.share(link.key, None)
        vector = link.doc.get_state()
        await self._publish(BusMessage(Kind.RESYNC, link.key, self.bus.worker_id, vector))
