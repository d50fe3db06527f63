"""One open diagram: a pycrdt document, its clients, and the Yjs sync and awareness protocol.

The room speaks what y-websocket's reference server speaks. On join it sends sync step 1 (its
state vector) and the current awareness states; it answers a client's step 1 with step 2 (the
update since that client's state vector); it applies editors' updates and broadcasts each
applied transaction's own update (from the document's observer, never a re-encoding of the
whole state) to the other clients; it relays awareness, coalesced per room, removes a leaving
connection's awareness ids, and answers query-awareness with every state.

Differences on purpose: updates are not echoed to their sender (it has them); viewers' updates
are refused (counted, never applied, the viewer told once with an auth permission-denied
message and kept connected); every update is validated (``rooms.validation``).

Failure isolation: every message is handled inside one boundary. Input errors close only the
sender (4400 malformed, 1009 too big, 1013 too fast); anything unexpected is logged and closes
only the sender with 1011. A document that stops working after that is failed as a whole: its
clients get 1011 and the registry drops the room without snapshotting it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Self

from pycrdt import Doc, TransactionEvent, merge_updates

from core.errors import InvalidInput, Unavailable
from rooms.awareness import AwarenessStates, Coalescer
from rooms.client import Client, CloseCode, close_code_for
from rooms.limits import Limits, MessageTooLarge, Metrics, RateExceeded, RoomClosed, RoomFull
from rooms.protocol import (
    AUTH_PERMISSION_DENIED,
    AuthMessage,
    AwarenessEntry,
    AwarenessMessage,
    MalformedMessage,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    decode_message,
    encode_awareness,
    encode_message,
)
from rooms.validation import StructureGuard, adds_content, state_vector

log = logging.getLogger(__name__)

#: ``on_update(update, user_id)``: called after every change the room applied from a client
#: (``user_id`` of its sender) or through :meth:`Room.change`, with that change's update bytes,
#: and awaited before the change is broadcast: the server appends it to the room's durable
#: update log there, so no client sees an update a crash could lose.
UpdateHook = Callable[[bytes, str | None], Awaitable[None]]
#: ``on_awareness(entries)``: awareness changes made by this room's own clients (not those
#: applied from other workers, not expiries), for sharing with the same room elsewhere.
AwarenessHook = Callable[[list[AwarenessEntry]], None]

EMPTY_STATE_VECTOR: Final = b"\x00"
EMPTY_UPDATE: Final = b"\x00\x00"
READ_ONLY_REASON: Final = "read-only: this connection may not change the diagram"


def _is_panic(exc: BaseException) -> bool:
    # pyo3 turns a Rust panic into PanicException, a BaseException: a bug in pycrdt/yrs
    # triggered by one client must not escape as if it were a KeyboardInterrupt.
    return type(exc).__name__ == "PanicException"


class Room:
    """A live diagram. Use as an async context manager: it owns the room's timers."""

    def __init__(
        self,
        diagram_id: str,
        doc: Doc[Any],
        *,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        on_update: UpdateHook | None = None,
        on_awareness: AwarenessHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.diagram_id = diagram_id
        self._on_awareness = on_awareness
        self.doc = doc
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self.failed = False
        self._on_update = on_update
        self._clients: dict[Client, None] = {}  # an ordered set
        self._told_read_only: set[Client] = set()
        self._awareness = AwarenessStates(
            timeout_s=self.limits.awareness_timeout_s,
            clock=clock,
            max_state_bytes=self.limits.max_awareness_state_bytes,
            ids_per_owner=self.limits.awareness_ids_per_client,
        )
        self._coalescer = Coalescer()
        self._flush_scheduled = False
        self._full_state: bytes | None = None  # sync step 2 for an empty client, if current
        self._capture: list[bytes] | None = None
        self._guard = StructureGuard(doc)
        self._subscription = doc.observe(self._on_transaction)
        self._tasks: asyncio.TaskGroup | None = None
        self._stopped = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Room {self.diagram_id} clients={len(self._clients)}>"

    @property
    def clients(self) -> tuple[Client, ...]:
        return tuple(self._clients)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._tasks.create_task(self._expire_awareness_periodically())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.flush_awareness()
        self.stop()
        assert self._tasks is not None
        # As in Client: the body's exception propagates unwrapped; the timers end on stop.
        await self._tasks.__aexit__(None, None, None)
        self.doc.unobserve(self._subscription)
        self._guard.close()

    def stop(self) -> None:
        """Stop the room's timers; it takes no more joins or messages. Clients stay open."""
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def close_clients(self, code: int, reason: str) -> None:
        for client in self._clients:
            client.close(code, reason)

    def fail(self, reason: str) -> None:
        """The document is unusable: close every client with 1011 and stop."""
        if self.failed:
            return
        self.failed = True
        self.metrics.rooms_failed += 1
        log.error("room %s failed: %s", self.diagram_id, reason)
        self.close_clients(CloseCode.INTERNAL_ERROR, "the room failed; reconnect")
        self.stop()

    # --- clients ------------------------------------------------------------------------------

    async def join(self, client: Client) -> None:
        if self.stopped:
            raise RoomClosed(f"room {self.diagram_id!r} is closing; try again")
        if len(self._clients) >= self.limits.clients_per_room:
            raise RoomFull(self.diagram_id, self.limits.clients_per_room)
        self._clients[client] = None
        client.offer(encode_message(SyncStep1(self.doc.get_state())))
        states = self._awareness.states()
        if states:
            client.offer(encode_message(AwarenessMessage(encode_awareness(states))))

    async def leave(self, client: Client) -> None:
        if self._clients.pop(client, _ABSENT) is _ABSENT:
            return
        self._told_read_only.discard(client)
        removed = self._awareness.remove_owner(client)
        self._queue_awareness(removed)
        self._share_awareness(removed)

    async def receive(self, client: Client, data: bytes) -> None:
        """Handle one message from ``client``; never raises for anything the client sent."""
        if client.closed or client not in self._clients or self.stopped:
            return
        self.metrics.messages_in += 1
        self.metrics.bytes_in += len(data)
        try:
            if len(data) > self.limits.max_message_bytes:
                raise MessageTooLarge(f"messages are limited to {self.limits.max_message_bytes} B")
            if not client.within_rate(len(data)):
                raise RateExceeded("slow down: too many messages or bytes per second")
            await self._handle(client, decode_message(data))
        except (InvalidInput, RateExceeded) as exc:  # the client's fault: tell it why
            client.close(close_code_for(exc), exc.detail)
        except Exception as exc:
            self._broke(client, exc)
        except BaseException as exc:
            if not _is_panic(exc):
                raise
            self._broke(client, exc)

    def _broke(self, client: Client, exc: BaseException) -> None:
        log.error("a message from %s broke in room %s", client, self.diagram_id, exc_info=exc)
        client.close(CloseCode.INTERNAL_ERROR, "internal error")
        try:
            self.doc.get_state()
        except BaseException as health:
            if not (isinstance(health, Exception) or _is_panic(health)):
                raise
            self.fail(f"the document stopped working: {health!r}")

    async def _handle(self, client: Client, message: Message) -> None:
        match message:
            case SyncStep1(vector):
                client.offer(self._sync_step2(vector))
            case SyncStep2(update) | SyncUpdate(update):
                if client.can_edit:
                    await self._apply_from(client, update)
                else:
                    self._refuse(client, update, answer=isinstance(message, SyncStep2))
            case AwarenessMessage(payload):
                accepted = self._awareness.apply(client, decode_awareness(payload))
                self._queue_awareness(accepted)
                self._share_awareness(accepted)
            case QueryAwareness():
                states = self._awareness.states()
                client.offer(encode_message(AwarenessMessage(encode_awareness(states))))
            case AuthMessage():
                pass  # clients do not authenticate in-band; y-websocket's server ignores it too

    # --- document -----------------------------------------------------------------------------

    def _sync_step2(self, vector: bytes) -> bytes:
        if vector == EMPTY_STATE_VECTOR:
            # Join storms: every new client asks for everything; encode it once per change.
            if self._full_state is None:
                self._full_state = encode_message(SyncStep2(self.doc.get_update()))
                self.metrics.full_state_encodes += 1
            return self._full_state
        try:
            update = self.doc.get_update(vector)
        except ValueError:
            raise MalformedMessage("the state vector does not decode") from None
        return encode_message(SyncStep2(update))

    def _refuse(self, client: Client, update: bytes, *, answer: bool) -> None:
        # A viewer's provider answers our sync step 1 with its own step 2; that is not an edit
        # unless it holds content we lack (its deletions are the ones it got from us).
        if answer:
            known = state_vector(self.doc.get_state())
            if not adds_content(update, known):
                return
        elif update == EMPTY_UPDATE:
            return
        self.metrics.viewer_updates_refused += 1
        if client not in self._told_read_only:
            self._told_read_only.add(client)
            client.offer(encode_message(AuthMessage(AUTH_PERMISSION_DENIED, READ_ONLY_REASON)))

    async def _apply_from(self, client: Client, update: bytes) -> None:
        started = time.perf_counter()
        captured: list[bytes] = []
        error = None
        self._capture = captured
        try:
            with self._guard.watch():
                try:
                    self.doc.apply_update(update)
                except (ValueError, RuntimeError):
                    # What integrated before the error is in the document: it is checked and
                    # broadcast below like any change, so every client keeps the same state.
                    error = "the update does not decode or apply"
            fixes = self._guard.fixes()
            if fixes:
                self._guard.repair(fixes)
                self.metrics.updates_repaired += 1
                first = fixes[0]
                where = "/".join((first.root, *first.path, first.name))
                error = error or f"the update breaks the diagram's structure at {where}"
        finally:
            # Even when checking failed: what is in the document must reach every client,
            # after the hook made it durable (the update log) and before anyone sees it.
            self._capture = None
            change = _merged(captured)
            if change is not None:
                self.metrics.updates_applied += 1
                try:
                    await self._publish(change, client)
                finally:
                    self._broadcast(encode_message(SyncUpdate(change)), exclude=client)
                    self.metrics.fanout_seconds.observe(time.perf_counter() - started)
        if error is not None:
            client.close(CloseCode.MALFORMED, error)

    async def _publish(self, change: bytes, client: Client) -> None:
        if self._on_update is None:
            return
        try:
            await self._on_update(change, client.user_id)
        except Exception as exc:
            # The change is applied and is broadcast next; only its publication failed.
            self.metrics.hook_failures += 1
            log.exception("on_update failed in room %s", self.diagram_id)
            # Not the client's fault: 1013 (retry) when a dependency is down, 1011 otherwise.
            code = (
                CloseCode.TRY_AGAIN_LATER
                if isinstance(exc, Unavailable)
                else CloseCode.INTERNAL_ERROR
            )
            client.close(code, "the change could not be published; reconnect")

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._full_state = None
        if self._capture is not None:
            self._capture.append(event.update)
        else:
            # A change made outside the room's methods (e.g. applied from another worker):
            # every local client needs it.
            self._broadcast(encode_message(SyncUpdate(event.update)), exclude=None)

    def apply_remote(self, update: bytes) -> None:
        """Apply an update another worker validated and published; broadcast it here only.

        Raises ``ValueError``/``RuntimeError`` from pycrdt when it does not apply.
        """
        self.doc.apply_update(update)

    async def change(
        self, edit: Callable[[Doc[Any]], object], *, user_id: str | None = None
    ) -> bytes | None:
        """Run ``edit(doc)`` in one server transaction; broadcast and publish its update.

        For server-side changes (a REST save folded into the live document). Returns the
        update, or ``None`` when nothing changed. Exceptions from ``edit`` and ``on_update``
        propagate to the caller.
        """
        captured: list[bytes] = []
        self._capture = captured
        try:
            with self.doc.transaction():
                edit(self.doc)
        finally:
            # pycrdt commits what ``edit`` did even when it raised: share that too.
            self._capture = None
            update = _merged(captured)
            if update is not None:
                try:
                    if self._on_update is not None:
                        await self._on_update(update, user_id)
                finally:
                    self._broadcast(encode_message(SyncUpdate(update)), exclude=None)
        return update

    def _broadcast(self, data: bytes, *, exclude: Client | None) -> None:
        for client in self._clients:
            if client is not exclude:
                client.offer(data)

    # --- awareness ----------------------------------------------------------------------------

    def _share_awareness(self, entries: list[AwarenessEntry]) -> None:
        if entries and self._on_awareness is not None:
            self._on_awareness(entries)

    def apply_remote_awareness(self, origin: str, payload: bytes) -> None:
        """Apply awareness another worker's clients announced; relay it to the clients here.

        Each remote client id is its own owner: a worker relays many clients, and the
        per-connection limit is for connections. Remote states expire like local ones, so
        those of a worker that died go away after the timeout. Raises ``InvalidInput``.
        """
        accepted: list[AwarenessEntry] = []
        for entry in decode_awareness(payload):
            accepted += self._awareness.apply(("remote", origin, entry.client_id), [entry])
        self._queue_awareness(accepted)

    def awareness_states(self) -> list[AwarenessEntry]:
        return self._awareness.states()

    def _queue_awareness(self, entries: list[AwarenessEntry]) -> None:
        if not entries:
            return
        self._coalescer.add(entries)
        if self._flush_scheduled:
            return
        if self._tasks is None or self.stopped:
            self.flush_awareness()
            return
        self._flush_scheduled = True
        self._tasks.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.limits.awareness_coalesce_s)
        self.flush_awareness()

    def flush_awareness(self) -> None:
        """Send the changes of the current window now, as one message to every client."""
        self._flush_scheduled = False
        entries = self._coalescer.take()
        if entries:
            self.metrics.awareness_flushes += 1
            self._broadcast(
                encode_message(AwarenessMessage(encode_awareness(entries))), exclude=None
            )

    def expire_awareness(self) -> None:
        """Remove the awareness states not renewed within the timeout."""
        self._queue_awareness(self._awareness.expire())

    async def _expire_awareness_periodically(self) -> None:
        # y-protocols checks every tenth of the timeout; so does the room.
        interval = self.limits.awareness_timeout_s / 10
        while not self.stopped:
            try:
                async with asyncio.timeout(interval):
                    await self._stopped.wait()
            except TimeoutError:
                self.expire_awareness()


_ABSENT: Final[Any] = object()


def _merged(updates: list[bytes]) -> bytes | None:
    if not updates:
        return None
    return updates[0] if len(updates) == 1 else merge_updates(*updates)
