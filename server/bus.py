"""The fan-out bus between workers: the port, its message, and the in-process adapter.

One channel per room carries what a worker's room must share with the same room on
other workers: updates (tagged with their position in the room's update log),
awareness changes, and control messages (a request to resend what a worker lacks
after it lost messages, a query for awareness states). Every message names its
origin worker; a worker ignores its own.

The bus is fast, not reliable: pub/sub drops messages while a connection is down.
What makes the rooms whole again is the update log (a worker catches up from it
before every snapshot and after a reconnect) and the resync request (workers send
each other what the other lacks, as Yjs sync does between a client and a server).

With no Redis (the embedded default) there is one worker and nobody to tell:
``InProcessBus`` delivers to other buses on the same ``InProcessHub`` only, which
tests use to run several workers in one process.
"""

from __future__ import annotations

import enum
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, Self

from core.errors import InvalidInput
from core.histogram import Histogram


class Kind(enum.IntEnum):
    UPDATE = 1  # payload: a Yjs update; position: its update-log entry (if logged)
    AWARENESS = 2  # payload: a y-protocols awareness update
    RESYNC = 3  # payload: the sender's state vector; answer with what it lacks
    QUERY_AWARENESS = 4  # payload: empty; answer with the awareness states you hold
    RESET = 5  # payload: empty; the room's document was replaced (new epoch): close its clients


@dataclass(frozen=True, slots=True)
class BusMessage:
    kind: Kind
    room: str
    origin: str
    payload: bytes = b""
    position: str | None = None
    sent_at: float = field(default_factory=time.time)  # wall clock: bus lag across workers


_HEADER = struct.Struct("!BdHH")  # kind, sent_at, len(origin), len(position)


def encode(message: BusMessage) -> bytes:
    """The message as it travels on its room's channel (the room is the channel)."""
    origin = message.origin.encode()
    position = (message.position or "").encode()
    header = _HEADER.pack(message.kind, message.sent_at, len(origin), len(position))
    return header + origin + position + message.payload


def decode(room: str, data: bytes) -> BusMessage:
    try:
        kind, sent_at, origin_len, position_len = _HEADER.unpack_from(data)
        start = _HEADER.size
        origin = data[start : start + origin_len].decode()
        start += origin_len
        position = data[start : start + position_len].decode() or None
        start += position_len
        if len(data) < start:
            raise ValueError("truncated")
        return BusMessage(Kind(kind), room, origin, data[start:], position, sent_at)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"not a bus message: {exc}") from None


class RoomLink(Protocol):
    """What the bus delivers to: one room on this worker."""

    async def received(self, message: BusMessage) -> None: ...

    async def resync(self) -> None:
        """Messages may have been lost (the connection dropped): catch up."""


@dataclass
class BusMetrics:
    published: int = 0
    publish_failures: int = 0
    received: int = 0
    dropped: int = 0  # undecodable, or for a room no longer open here
    reconnects: int = 0
    lag_seconds: Histogram = field(default_factory=Histogram)


class Bus(Protocol):
    worker_id: str
    metrics: BusMetrics

    async def join(self, room: str, link: RoomLink) -> None:
        """Subscribe ``link`` to the room's channel; returns once messages flow."""

    async def leave(self, room: str) -> None: ...

    async def publish(self, message: BusMessage) -> None:
        """Best effort: a failure is counted and logged, never raised."""


def new_worker_id() -> str:
    return uuid.uuid4().hex[:12]


Handler = Callable[[BusMessage], Awaitable[None]]


class InProcessHub:
    """Buses that can hear each other: the workers of one test, or of one process."""

    def __init__(self) -> None:
        self.buses: list[InProcessBus] = []


class InProcessBus:
    def __init__(self, hub: InProcessHub | None = None, *, worker_id: str | None = None) -> None:
        self.worker_id = worker_id or new_worker_id()
        self.metrics = BusMetrics()
        self._hub = hub or InProcessHub()
        self._links: dict[str, RoomLink] = {}

    async def __aenter__(self) -> Self:
        self._hub.buses.append(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._hub.buses.remove(self)
        self._links.clear()

    async def join(self, room: str, link: RoomLink) -> None:
        self._links[room] = link

    async def leave(self, room: str) -> None:
        self._links.pop(room, None)

    async def publish(self, message: BusMessage) -> None:
        self.metrics.published += 1
        others = [bus for bus in self._hub.buses if bus is not self]
        if not others:
            return  # alone (the embedded default): nobody to encode it for
        data = encode(message)  # as on a real channel: what arrives is a decoded copy
        for bus in others:
            await bus.deliver(message.room, data)

    async def deliver(self, room: str, data: bytes) -> None:
        link = self._links.get(room)
        if link is None:
            return
        message = decode(room, data)
        if message.origin == self.worker_id:
            return
        self.metrics.received += 1
        self.metrics.lag_seconds.observe(max(0.0, time.time() - message.sent_at))
        await link.received(message)
