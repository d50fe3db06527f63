"""What a room allows, how the per-connection rates are enforced, and what got counted.

:class:`Limits` is the set of room limits with safe defaults; the server's settings fill it
from configuration (the core never reads ``Settings`` itself). :class:`TokenBucket` enforces
the message and byte rates of one connection. :class:`Metrics` is a small bag of counters
shared by a registry, its rooms and its clients; the metrics endpoint reads it.

The errors here are what the limits refuse: a message too large (1009), a client too fast,
a room full, too many rooms, a room closing (all :class:`~core.errors.Unavailable`, retryable:
the WebSocket edge closes with 1013 "try again later").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from core.errors import TooLarge, Unavailable
from core.histogram import Histogram

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Room limits. Rates are per connection; a burst is how much may arrive at once."""

    max_message_bytes: int = MIB
    # A y-websocket client sends one awareness message per cursor move (60+ Hz) and one
    # update per drag frame, so the steady rate must be generous; the burst absorbs a join.
    messages_per_s: float = 200.0
    message_burst: float = 400.0
    bytes_per_s: float = 2 * MIB
    # At least one message of the maximum size must always fit.
    byte_burst: float = 4 * MIB
    clients_per_room: int = 256
    rooms_per_worker: int = 1000
    outbox_size: int = 512
    awareness_coalesce_s: float = 0.05
    awareness_timeout_s: float = 30.0
    # Every joiner receives every state: a large one is a memory and bandwidth amplifier.
    max_awareness_state_bytes: int = 32 * 1024
    # A y-websocket client announces one id (its doc's clientID); a few more allow for an
    # id change after a clientID conflict.
    awareness_ids_per_client: int = 8
    unload_grace_s: float = 10.0
    # How long a close handshake may take before the connection is abandoned.
    close_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{item.name} must be a finite number >= 0, not {value!r}")
        for name in (
            "max_message_bytes",
            "messages_per_s",
            "message_burst",
            "bytes_per_s",
            "clients_per_room",
            "rooms_per_worker",
            "outbox_size",
            "awareness_timeout_s",
            "awareness_ids_per_client",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.message_burst < 1:
            raise ValueError("message_burst must be >= 1: no message could ever pass")
        if self.byte_burst < self.max_message_bytes:
            raise ValueError("byte_burst must be >= max_message_bytes: a full message must pass")


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def take(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are that many; say whether it was allowed."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if cost > self._tokens:
            return False
        self._tokens -= cost
        return True


@dataclass(slots=True)
class Metrics:
    """Counters of one worker's rooms. Plain ints: read them, never reset them."""

    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    updates_applied: int = 0
    updates_repaired: int = 0
    viewer_updates_refused: int = 0
    awareness_flushes: int = 0
    full_state_encodes: int = 0
    rooms_opened: int = 0
    rooms_unloaded: int = 0
    rooms_failed: int = 0
    load_failures: int = 0
    hook_failures: int = 0
    joins_refused: int = 0
    clients_closed: Counter[int] = field(default_factory=Counter)  # by close code
    # From an update's arrival to its broadcast to the room's local clients (log append
    # included: nobody sees an update before it is durable).
    fanout_seconds: Histogram = field(default_factory=Histogram)


class RoomFull(Unavailable):
    code = "room_full"
    title = "Room full"

    def __init__(self, diagram_id: str, limit: int) -> None:
        super().__init__(
            f"room {diagram_id!r} already has {limit} clients; try again later",
            diagramId=diagram_id,
            limit=limit,
        )


class TooManyRooms(Unavailable):
    code = "too_many_rooms"
    title = "Too many open rooms"

    def __init__(self, limit: int) -> None:
        super().__init__(f"this worker already holds {limit} rooms; try again later", limit=limit)


class RoomClosed(Unavailable):
    code = "room_closed"
    title = "Room closed"


class MessageTooLarge(TooLarge):
    code = "message_too_large"
    title = "Message too large"


class RateExceeded(Unavailable):
    code = "rate_exceeded"
    title = "Too many messages"
