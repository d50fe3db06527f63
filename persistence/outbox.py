"""The outbox, seen by whoever delivers its events: the ``Outbox`` port and its records.

The stores write an event in the same transaction as the change it reports
(``diagram.created``, ``diagram.saved``, ``diagram.deleted``). A processor claims
due events for a lease, handles them and marks each one delivered, to retry
later, or parked. Delivery is at least once: a processor that dies mid-event
lets its lease run out and the event is claimed again, so handlers must be
idempotent.

Every adapter passes the same contract suite (``tests/contract/test_outbox_contract.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from core.errors import InvalidInput

# Enough of an error message to diagnose a parked event; a traceback belongs in the log.
MAX_ERROR_CHARS = 2000
# Far beyond any sensible lease or backoff, and small enough for every clock type.
MAX_WAIT_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One claimed event. ``attempts`` counts claims, this one included."""

    id: int
    org_id: str
    diagram_id: str
    type: str
    payload: Mapping[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    """Events not delivered yet: ``pending`` may still be delivered (due, leased or
    waiting for a retry), ``parked`` wait for an operator."""

    pending: int
    parked: int


class Outbox(Protocol):
    async def claim(self, *, limit: int, lease_s: float) -> list[OutboxEvent]:
        """Up to ``limit`` due events, oldest first, each leased for ``lease_s``
        seconds and its ``attempts`` raised by one.

        Due: not delivered, not parked, its retry time reached and no unexpired
        lease. Claims running at once (several processors) never return the
        same event while its lease holds.
        """

    async def complete(self, event: OutboxEvent) -> None:
        """Mark ``event`` delivered; it is never claimed again. Idempotent."""

    async def retry(self, event: OutboxEvent, *, error: str, delay_s: float) -> None:
        """Release ``event`` to be claimed again ``delay_s`` seconds from now.

        Does nothing when the event was claimed again since (its lease ran out
        and another processor holds it now) or was delivered.
        """

    async def park(self, event: OutboxEvent, *, error: str) -> None:
        """Stop delivering ``event`` and keep ``error`` with it for an operator.

        Does nothing when the event was claimed again since, or was delivered.
        """

    async def backlog(self) -> OutboxBacklog: ...

    async def set_thumbnail(self, org_id: str, diagram_id: str, *, version: int, url: str) -> bool:
        """Show the thumbnail of ``version`` at ``url`` on the live diagram, unless
        it already shows one of this version or a newer one. True when it changed."""


def check_claim(limit: int, lease_s: float) -> None:
    if isinstance(limit, bool) or limit < 1:
        raise InvalidInput("a claim takes at least one event", limit=limit)
    if not 0 <= lease_s <= MAX_WAIT_S:  # also refuses NaN
        raise InvalidInput(f"a lease must be between 0 and {MAX_WAIT_S:.0f} s", leaseS=lease_s)


def check_delay(delay_s: float) -> None:
    if not 0 <= delay_s <= MAX_WAIT_S:
        raise InvalidInput(
            f"a retry delay must be between 0 and {MAX_WAIT_S:.0f} s", delayS=delay_s
        )


def clip_error(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "\u2026"
