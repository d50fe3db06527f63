"""The benchmark's WebSocket clients: how they join a room, and the three roles they play.

- :class:`Editor` sends edits on a fixed schedule and only counts what it receives;
- :class:`DocObserver` applies every update to its pycrdt ``Doc`` and times an edit when the
  document shows it (the fan-out latency of the ``rooms`` scenario);
- :class:`CountingObserver` decodes nothing: it counts frames and times the n-th update it
  receives against the n-th edit a lone writer sent (``broadcast``, where 1,000 Docs would
  make the load generator, not the server, the bottleneck).

What goes on the wire, and how a frame is read, is the connection's :class:`~bench.wire.Wire`
(y-websocket's frames, or Hocuspocus' document-prefixed ones), so the roles above are the same
against every kind of server.

Every receive loop catches its own failures and counts them by kind, so one bad connection
never stops the others (they all run in one task group).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Final

from pycrdt import Doc, Map, MapEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin

from bench.edits import Bounds, EditingDoc, Ledger, Target, moved
from bench.stamp import Stamp, read_stamp
from bench.stats import Recorder
from bench.tally import Tally
from bench.wire import Refused, Wire
from bpmn.document import BOUNDS, DI, ELEMENTS
from rooms.protocol import MalformedMessage, Message, SyncStep1, SyncStep2, SyncUpdate

EMPTY_STATE_VECTOR: Final = b"\x00"
EMPTY_UPDATE: Final = b"\x00\x00"
_NS_PER_MS: Final = 1_000_000


@dataclass(slots=True)
class Traffic:
    """Counters shared by every client of a run (one event loop: plain ints are safe)."""

    connected: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    edits_sent: int = 0


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a client needs to join a room: the WebSocket URL (a token in it, if any) and the
    wire format of the server behind it."""

    url: str
    wire: Wire


@dataclass(frozen=True, slots=True)
class Link:
    """A joined WebSocket and the wire format it speaks."""

    ws: ClientConnection
    wire: Wire


class Peer:
    """One joined connection: its socket, the shared counters, and its receive loop."""

    def __init__(self, link: Link, traffic: Traffic, errors: Tally) -> None:
        self.ws = link.ws
        self.wire = link.wire
        # An attribute, not a property: observers test it on every frame.
        self.update_prefix = link.wire.update_prefix
        self.traffic = traffic
        self.errors = errors
        self.closing = False
        traffic.connected += 1

    async def send(self, data: bytes) -> None:
        await _send(self.ws, self.traffic, data)

    async def run(self) -> None:
        """Receive until the connection ends; an end we did not ask for is an error."""
        try:
            while True:
                frame = await self.ws.recv()
                if not isinstance(frame, bytes):
                    self.errors.add("text_frame")
                    continue
                self.traffic.frames_in += 1
                self.traffic.bytes_in += len(frame)
                self.on_frame(frame)
        except ConnectionClosed:
            if not self.closing:
                self.errors.add(f"closed_{self.ws.close_code}", self.ws.close_reason or "")
        except MalformedMessage as exc:
            self.errors.add("malformed_frame", exc.detail)
            await self.close()  # as y-websocket would: the stream can no longer be trusted
        except Refused as exc:
            self.errors.add(exc.kind, exc.detail)
            await self.close()
        finally:
            self.traffic.connected -= 1

    def on_frame(self, frame: bytes) -> None:
        pass

    async def close(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):  # already gone: nothing to close
            await self.ws.close()


async def join(
    ticket: Ticket,
    traffic: Traffic,
    *,
    origin: str | None = None,
) -> tuple[Link, bytes]:
    """Connect and sync as a y-websocket (or Hocuspocus) provider does; (the joined link,
    the server's sync step 2 update).

    The server's own sync step 1 (y-websocket servers send it first, Hocuspocus in answer
    to ours) is answered with an empty update, which is what a fresh client's document
    holds. Failures raise; :func:`failure_kind` names them.
    """
    wire = ticket.wire
    ws = await connect(
        ticket.url,
        origin=None if origin is None else Origin(origin),
        compression=None,  # the server does not deflate by default; skip the negotiation
        ping_interval=None,  # y-websocket (a browser) sends no pings either
        proxy=None,  # never through a proxy from the environment
        max_size=64 * 1024 * 1024,
        max_queue=256,
        open_timeout=60,
        close_timeout=5,
    )
    try:
        for greeting in wire.hello():
            await _send(ws, traffic, greeting)
        await _send(ws, traffic, wire.encode(SyncStep1(EMPTY_STATE_VECTOR)))
        while True:
            frame = await ws.recv()
            if not isinstance(frame, bytes):
                continue
            traffic.frames_in += 1
            traffic.bytes_in += len(frame)
            message = wire.decode(frame)
            if isinstance(message, SyncStep1):
                await _send(ws, traffic, wire.encode(SyncStep2(EMPTY_UPDATE)))
            elif isinstance(message, SyncStep2):
                return Link(ws, wire), message.update
    except BaseException:
        with contextlib.suppress(Exception):
            await ws.close()
        raise


async def send(link: Link, traffic: Traffic, message: Message) -> None:
    """One message, framed for the link's server."""
    await _send(link.ws, traffic, link.wire.encode(message))


async def resync(link: Link, traffic: Traffic) -> bytes:
    """The server's whole state, asked for again on a joined connection (sync step 1 with an
    empty state vector). Frames before the answer (echoes, acknowledgements) are skipped: a
    server answers one connection's messages in order, so the answer holds everything this
    connection sent before."""
    await send(link, traffic, SyncStep1(EMPTY_STATE_VECTOR))
    while True:
        frame = await link.ws.recv()
        if isinstance(frame, bytes):
            traffic.frames_in += 1
            traffic.bytes_in += len(frame)
            message = link.wire.decode(frame)
            if isinstance(message, SyncStep2):
                return message.update


async def _send(ws: ClientConnection, traffic: Traffic, data: bytes) -> None:
    await ws.send(data)
    traffic.frames_out += 1
    traffic.bytes_out += len(data)


def failure_kind(exc: BaseException) -> str:
    """How a failed join is counted: the close code, the HTTP status, or the error's name."""
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else None
        return f"closed_{code}"
    if isinstance(exc, InvalidStatus):
        return f"ws_http_{exc.response.status_code}"
    if isinstance(exc, InvalidHandshake):
        return "ws_handshake"
    if isinstance(exc, TimeoutError):
        return "join_timeout"
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) else type(exc).__name__


class Editor(Peer):
    """Sends a rename, then a move, then a rename... of its targets at ``rate_hz``."""

    def __init__(
        self,
        link: Link,
        doc: EditingDoc,
        *,
        room: int,
        editor: int,
        targets: list[Target],
        ledger: Ledger,
        lag: Recorder,
        traffic: Traffic,
        errors: Tally,
    ) -> None:
        super().__init__(link, traffic, errors)
        if not targets:
            raise ValueError("an editor needs at least one task to edit")
        self.doc = doc
        self.room = room
        self.editor = editor
        self.targets = targets
        self.ledger = ledger
        self.lag = lag
        self._moves = [0] * len(targets)

    async def edit_until(self, start: float, stop: float, rate_hz: float) -> None:
        """Edit on a fixed schedule from ``start`` to ``stop`` (monotonic seconds).

        The schedule does not drift with send times, and how late each send is goes to
        ``lag``: a load generator that falls behind would otherwise hide the server's
        slowness by simply sending less (coordinated omission).
        """
        period = 1 / rate_hz
        seq = 0
        while not self.closing:
            due = start + seq * period
            if due >= stop:
                # Return at ``stop``, not after the last send: the measured window is exact.
                await asyncio.sleep(max(0.0, stop - time.monotonic()))
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lag.add((time.monotonic() - due) * 1000)
            try:
                await self.send(self.wire.encode(SyncUpdate(self._edit(seq))))
            except ConnectionClosed:
                return  # counted by the receive loop
            self.traffic.edits_sent += 1
            seq += 1

    def _edit(self, seq: int) -> bytes:
        index = (seq // 2) % len(self.targets)
        target = self.targets[index]
        if seq % 2 == 0:
            now = time.monotonic_ns()
            self.ledger.note(self.room, now)
            return self.doc.rename(target.task, Stamp(self.editor, seq, now))
        bounds = moved(target.home, self._moves[index])
        self._moves[index] += 1
        update = self.doc.move(target.shape, bounds)
        self.ledger.note(self.room, time.monotonic_ns(), (target.shape, bounds))
        return update


class Ordinal:
    """Times the n-th update a client receives against the n-th edit sent.

    Valid with one writer and nothing else changing the document, as in ``broadcast``:
    the server relays each edit as one update, in order. Cheap enough for 1,000 clients;
    the sampled :class:`DocObserver` s check it against what their documents show.
    """

    __slots__ = ("errors", "latency", "ledger", "seen")

    def __init__(self, ledger: Ledger, latency: Recorder, errors: Tally) -> None:
        self.ledger = ledger
        self.latency = latency
        self.errors = errors
        self.seen = 0

    def on_update(self) -> None:
        now = time.monotonic_ns()
        if self.seen < len(self.ledger.sent_ns):
            self.latency.add((now - self.ledger.sent_ns[self.seen]) / _NS_PER_MS)
        else:
            self.errors.add("unexpected_update")
        self.seen += 1


class DocObserver(Peer):
    """Applies every update and times each edit when its document shows it."""

    def __init__(
        self,
        link: Link,
        state: bytes,
        *,
        room: int,
        ledger: Ledger,
        latency: Recorder,
        traffic: Traffic,
        errors: Tally,
        ordinal: Ordinal | None = None,
    ) -> None:
        super().__init__(link, traffic, errors)
        self.room = room
        self.ledger = ledger
        self.latency = latency
        self.ordinal = ordinal
        self.seen = 0
        self.doc: Doc[Any] = Doc()
        self.doc.apply_update(state)  # before observing: the initial state is not an edit
        self._subscriptions = (
            self.doc.get(ELEMENTS, type=Map).observe_deep(self._on_elements),
            self.doc.get(DI, type=Map).observe_deep(self._on_di),
        )

    def on_frame(self, frame: bytes) -> None:
        if self.ordinal is not None and frame.startswith(self.update_prefix):
            self.ordinal.on_update()
        message = self.wire.decode(frame)
        if isinstance(message, SyncUpdate | SyncStep2):
            try:
                self.doc.apply_update(message.update)
            except (ValueError, RuntimeError) as exc:
                self.errors.add("update_does_not_apply", repr(exc))

    def _on_elements(self, events: list[Any]) -> None:
        now = time.monotonic_ns()
        for event in events:
            change = _changed(event, "name")
            stamp = read_stamp(change.get("newValue")) if change else None
            if stamp is not None:
                self._seen(now - stamp.sent_ns)

    def _on_di(self, events: list[Any]) -> None:
        now = time.monotonic_ns()
        for event in events:
            change = _changed(event, BOUNDS)
            bounds = change.get("newValue") if change else None
            if not (isinstance(bounds, list) and event.path):
                continue
            shape = str(event.path[0])
            sent = self.ledger.move_sent_ns(self.room, shape, _bounds(bounds))
            if sent is not None:
                self._seen(now - sent)

    def _seen(self, elapsed_ns: int) -> None:
        self.seen += 1
        self.latency.add(elapsed_ns / _NS_PER_MS)


def _changed(event: Any, key: str) -> dict[str, Any] | None:
    """``{"action", "oldValue", "newValue"}`` of ``key`` in a map event, else None."""
    keys = getattr(event, "keys", None) if isinstance(event, MapEvent) else None
    change = keys.get(key) if isinstance(keys, dict) else None
    return change if isinstance(change, dict) else None


def _bounds(values: list[Any]) -> Bounds:
    return tuple(float(v) for v in values)


class CountingObserver(Peer):
    """Decodes nothing: counts frames and times updates by their ordinal."""

    def __init__(self, link: Link, *, ordinal: Ordinal, traffic: Traffic, errors: Tally) -> None:
        super().__init__(link, traffic, errors)
        self.ordinal = ordinal

    def on_frame(self, frame: bytes) -> None:
        if frame.startswith(self.update_prefix):
            self.ordinal.on_update()
