"""The rooms open on one worker: opened on the first client, shared, unloaded after the last.

:class:`RoomRegistry` is an async context manager owning one task group; each open room runs in
one task of it (load, serve, unload hook), so nothing outlives the registry. Joining goes
through :meth:`RoomRegistry.connect` (or :meth:`~RoomRegistry.session` for a client the caller
runs itself):

- the first client of a diagram starts the room's task, which calls the ``loader``; clients
  arriving during the load wait for that same load (one document per diagram per worker);
- a load failure is raised to every client waiting for it, and the next join loads again;
- limits refuse a join with :class:`~rooms.limits.TooManyRooms` or
  :class:`~rooms.limits.RoomFull` (both ``Unavailable``: the edge closes with 1013);
- ``unload_grace_s`` after its last client left, the room stops and ``on_unload(diagram_id,
  doc)`` runs (the snapshotter's hook); a failing hook is logged and counted, never raised. A
  client joining while a room unloads waits for the unload, then opens it afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Self

from pycrdt import Doc

from core.errors import CollabError, Unavailable
from rooms.client import Client, CloseCode, Role, close_code_for
from rooms.limits import Limits, Metrics, RoomClosed, RoomFull, TooManyRooms
from rooms.protocol import AwarenessEntry
from rooms.room import Room
from rooms.transport import Transport

log = logging.getLogger(__name__)

Loader = Callable[[str], Awaitable[Doc[Any]]]
#: ``on_update(diagram_id, update, user_id)``, see :data:`rooms.room.UpdateHook`.
PublishHook = Callable[[str, bytes, str | None], Awaitable[None]]
UnloadHook = Callable[[str, Doc[Any]], Awaitable[None]]
#: ``on_open(diagram_id, room)``: the room exists and is about to take its first client.
OpenHook = Callable[[str, Room], Awaitable[None]]
#: ``on_awareness(diagram_id, entries)``, see :data:`rooms.room.AwarenessHook`.
ShareAwarenessHook = Callable[[str, list[AwarenessEntry]], None]


class ShuttingDown(Unavailable):
    code = "shutting_down"
    title = "Server shutting down"


@dataclass(eq=False)
class _Entry:
    diagram_id: str
    ready: asyncio.Future[Room]
    sessions: int = 0  # clients joined or waiting to join
    room: Room | None = None
    closing: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.Task[None] | None = None

    def stop(self) -> None:
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.room is not None:
            self.room.stop()


@dataclass(frozen=True, slots=True, eq=False)
class Session:
    """A client joined to a room: what the WebSocket edge holds while the socket is open."""

    room: Room
    client: Client
    entry: _Entry

    async def receive(self, data: bytes) -> None:
        await self.room.receive(self.client, data)

    @property
    def closed(self) -> bool:
        return self.client.closed

    async def wait_closed(self) -> None:
        await self.client.wait_closed()


class RoomRegistry:
    def __init__(
        self,
        loader: Loader,
        *,
        limits: Limits | None = None,
        on_update: PublishHook | None = None,
        on_unload: UnloadHook | None = None,
        on_open: OpenHook | None = None,
        on_awareness: ShareAwarenessHook | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self._loader = loader
        self._on_update = on_update
        self._on_unload = on_unload
        self._on_open = on_open
        self._on_awareness = on_awareness
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._shutting_down = False

    def room(self, diagram_id: str) -> Room | None:
        """The open room of ``diagram_id`` (e.g. to apply another worker's update), if any."""
        entry = self._entries.get(diagram_id)
        return None if entry is None or entry.closing else entry.room

    def __len__(self) -> int:
        return len(self._entries)

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._shutting_down = True
        self.close_all()
        for entry in list(self._entries.values()):
            entry.stop()
        assert self._tasks is not None
        # Each room's task runs its unload hook (a last snapshot) and ends.
        await self._tasks.__aexit__(None, None, None)

    def close_all(self, code: int = CloseCode.SERVICE_RESTART, reason: str = "restart") -> None:
        """Close every client of every room (1012: the server restarts, reconnect)."""
        for entry in self._entries.values():
            if entry.room is not None:
                entry.room.close_clients(code, reason)

    # --- joining --------------------------------------------------------------------------------

    def client(
        self, transport: Transport, *, user_id: str, role: Role, connection_id: str | None = None
    ) -> Client:
        """A client with this registry's limits, metrics and clock (enter it to run it)."""
        return Client(
            transport,
            user_id=user_id,
            role=role,
            connection_id=connection_id,
            limits=self.limits,
            metrics=self.metrics,
            clock=self._clock,
        )

    @asynccontextmanager
    async def connect(
        self,
        diagram_id: str,
        transport: Transport,
        *,
        user_id: str,
        role: Role,
        connection_id: str | None = None,
    ) -> AsyncIterator[Session]:
        """Run a client for ``transport`` and join it to the room of ``diagram_id``.

        A refusal (limits, load failure) closes the transport with the code that says why
        (1013 for limits) and is raised, so the edge can log it; it need not close again.
        """
        async with self.client(
            transport, user_id=user_id, role=role, connection_id=connection_id
        ) as client:
            session = await self.enter(diagram_id, client)
            try:
                yield session
            finally:
                await self.leave(session)

    @asynccontextmanager
    async def session(self, diagram_id: str, client: Client) -> AsyncIterator[Room]:
        """Join a running ``client`` to the room of ``diagram_id`` (opening it if needed)."""
        session = await self.enter(diagram_id, client)
        try:
            yield session.room
        finally:
            await self.leave(session)

    async def enter(self, diagram_id: str, client: Client) -> Session:
        """Join a running ``client`` to the room of ``diagram_id`` (opening it if needed);
        every session entered must be left (:meth:`leave`).

        What :meth:`connect` does, without its context-manager frames: the edge holds a
        session for a connection's whole life, thousands at once. A refusal closes the
        client with the code that says why (1013 for limits) and is raised.
        """
        try:
            entry = await self._acquire(diagram_id)
        except Exception as exc:
            _refused(client, exc)
            raise
        try:
            room = await asyncio.shield(entry.ready)
            await room.join(client)
        except BaseException as exc:
            self._release(entry)
            if isinstance(exc, Exception):
                _refused(client, exc)
            raise
        return Session(room, client, entry)

    async def leave(self, session: Session) -> None:
        try:
            await session.room.leave(session.client)
        finally:
            self._release(session.entry)

    async def _acquire(self, diagram_id: str) -> _Entry:
        while True:
            if self._shutting_down or self._tasks is None:
                raise ShuttingDown("the server is shutting down; reconnect")
            entry = self._entries.get(diagram_id)
            if entry is not None and entry.closing:
                await entry.closed.wait()
                continue
            if entry is None:
                if len(self._entries) >= self.limits.rooms_per_worker:
                    self.metrics.joins_refused += 1
                    raise TooManyRooms(self.limits.rooms_per_worker)
                entry = _Entry(diagram_id, asyncio.get_running_loop().create_future())
                # Nobody may be waiting when a load fails; the exception is still handled.
                entry.ready.add_done_callback(_consume)
                self._entries[diagram_id] = entry
                self._tasks.create_task(self._serve(entry), name=f"room-{diagram_id}")
            if entry.sessions >= self.limits.clients_per_room:
                self.metrics.joins_refused += 1
                raise RoomFull(diagram_id, self.limits.clients_per_room)
            entry.sessions += 1
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
            return entry

    def _release(self, entry: _Entry) -> None:
        entry.sessions -= 1
        if entry.sessions or entry.closing or self._entries.get(entry.diagram_id) is not entry:
            return
        assert self._tasks is not None
        entry.timer = self._tasks.create_task(self._unload_later(entry))

    async def _unload_later(self, entry: _Entry) -> None:
        await asyncio.sleep(self.limits.unload_grace_s)
        if entry.sessions == 0:
            entry.timer = None
            entry.stop()

    # --- one room's life ------------------------------------------------------------------------

    async def _serve(self, entry: _Entry) -> None:
        diagram_id = entry.diagram_id
        try:
            try:
                doc = await self._loader(diagram_id)
            except Exception as exc:
                self.metrics.load_failures += 1
                log.warning("room %s could not load: %r", diagram_id, exc)
                entry.ready.set_exception(exc)
                return
            on_update = None if self._on_update is None else partial(self._on_update, diagram_id)
            on_awareness = (
                None if self._on_awareness is None else partial(self._on_awareness, diagram_id)
            )
            room = Room(
                diagram_id,
                doc,
                limits=self.limits,
                metrics=self.metrics,
                on_update=on_update,
                on_awareness=on_awareness,
                clock=self._clock,
            )
            async with room:
                entry.room = room
                if self._on_open is not None:
                    try:
                        await self._on_open(diagram_id, room)
                    except Exception:
                        self.metrics.hook_failures += 1
                        log.exception("on_open failed for room %s", diagram_id)
                if entry.closing:
                    room.stop()
                entry.ready.set_result(room)
                self.metrics.rooms_opened += 1
                log.info("room %s opened", diagram_id)
                await room.wait_stopped()
                entry.closing = True
            await self._unload(diagram_id, room)
        except Exception:
            # A bad room never takes the worker down: log it and let the next join reopen.
            log.exception("room %s broke", diagram_id)
        finally:
            entry.closing = True
            if not entry.ready.done():
                entry.ready.set_exception(RoomClosed(f"room {diagram_id!r} closed while opening"))
            if self._entries.get(diagram_id) is entry:
                del self._entries[diagram_id]
            entry.closed.set()

    async def _unload(self, diagram_id: str, room: Room) -> None:
        self.metrics.rooms_unloaded += 1
        if room.failed:
            log.error("room %s unloaded after failing; its document is not saved", diagram_id)
            return
        if self._on_unload is not None:
            try:
                await self._on_unload(diagram_id, room.doc)
            except Exception:
                self.metrics.hook_failures += 1
                log.exception("on_unload failed for room %s", diagram_id)
        log.info("room %s unloaded", diagram_id)


def _refused(client: Client, exc: Exception) -> None:
    detail = exc.detail if isinstance(exc, CollabError) else "the room could not open"
    client.close(close_code_for(exc), detail)


def _consume(future: asyncio.Future[Room]) -> None:
    if not future.cancelled():
        future.exception()
