"""``Outbox`` on PostgreSQL: any number of processors, one per worker, claim at once.

A claim locks its rows with ``FOR UPDATE SKIP LOCKED`` and leases them in the
same statement, so concurrent claims pass each other's events by instead of
waiting for them or taking them too; after the claim commits, the lease keeps
them out of other claims until it runs out.

It has a small pool of its own on the store's database and, like the store,
runs each transaction as the restricted ``bpmn_collab_app`` role when that role
is usable. ``outbox_events`` has no row-level security (a processor serves every
organization), but ``diagrams`` has, so setting a thumbnail names the diagram's
organization in ``app.org_id`` exactly as the store does.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Self

import asyncpg

from core.errors import CollabError
from persistence.outbox import (
    OutboxBacklog,
    OutboxEvent,
    check_claim,
    check_delay,
    clip_error,
)
from persistence.pg_pool import Connection, PgPool
from persistence.rows import canonical_id, int4, json_object, utc_datetime

# now() is the transaction's start: one clock (the database's) for every processor.
_CLAIM = """
WITH due AS (
    SELECT id FROM outbox_events
    WHERE processed_at IS NULL AND parked_at IS NULL
      AND (next_attempt_at IS NULL OR next_attempt_at <= now())
      AND (claimed_until IS NULL OR claimed_until <= now())
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_events AS e
SET attempts = e.attempts + 1, claimed_until = now() + make_interval(secs => $2)
FROM due WHERE e.id = due.id
RETURNING e.id, e.org_id, e.diagram_id, e.type, e.payload, e.attempts, e.created_at
"""
# The claim that returned the event must still be the latest one: a processor whose
# lease ran out must not reschedule or park an event another processor now holds.
_RELEASE = """
UPDATE outbox_events SET {what}, claimed_until = NULL, last_error = $3
WHERE id = $1 AND attempts = $2 AND processed_at IS NULL AND parked_at IS NULL
"""
_RETRY = _RELEASE.format(what="next_attempt_at = now() + make_interval(secs => $4)")
_PARK = _RELEASE.format(what="parked_at = now()")
_COMPLETE = """
UPDATE outbox_events SET processed_at = now(), claimed_until = NULL
WHERE id = $1 AND processed_at IS NULL
"""
_BACKLOG = """
SELECT count(*) FILTER (WHERE parked_at IS NULL) AS pending,
       count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked
FROM outbox_events WHERE processed_at IS NULL
"""
_SET_THUMBNAIL = """
UPDATE diagrams SET thumbnail_url = $4, thumbnail_version = $3
WHERE id = $1::uuid AND org_id = $2 AND deleted_at IS NULL
  AND (thumbnail_version IS NULL OR thumbnail_version < $3)
RETURNING thumbnail_version
"""


class PostgresOutbox:
    def __init__(
        self,
        dsn: str,
        *,
        pool_min: int = 1,
        pool_max: int = 2,
        app_role: str | None = "bpmn_collab_app",
    ) -> None:
        self._db = PgPool(
            dsn, pool_min=pool_min, pool_max=pool_max, app_role=app_role, what="outbox"
        )

    async def __aenter__(self) -> Self:
        # After the store migrated (the composition root enters this later), so the
        # role's grants are there to be seen.
        await self._db.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._db.close()

    @property
    def uses_app_role(self) -> bool:
        return self._db.role_active

    def _transaction(self, org_id: str = "") -> AbstractAsyncContextManager[Connection]:
        """A transaction scoped to ``org_id`` ("" sees no organization's diagrams)."""
        return self._db.transaction(org_id)

    # --- Outbox -------------------------------------------------------------------------------

    async def claim(self, *, limit: int, lease_s: float) -> list[OutboxEvent]:
        check_claim(limit, lease_s)
        async with self._transaction() as conn:
            rows = await conn.fetch(_CLAIM, limit, float(lease_s))
        # UPDATE ... RETURNING gives no order; callers get the oldest first.
        return sorted((_event(row) for row in rows), key=lambda event: event.id)

    async def complete(self, event: OutboxEvent) -> None:
        async with self._transaction() as conn:
            await conn.execute(_COMPLETE, event.id)

    async def retry(self, event: OutboxEvent, *, error: str, delay_s: float) -> None:
        check_delay(delay_s)
        async with self._transaction() as conn:
            await conn.execute(
                _RETRY, event.id, event.attempts, _text(clip_error(error)), float(delay_s)
            )

    async def park(self, event: OutboxEvent, *, error: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(_PARK, event.id, event.attempts, _text(clip_error(error)))

    async def backlog(self) -> OutboxBacklog:
        async with self._transaction() as conn:
            row = await conn.fetchrow(_BACKLOG)
        if row is None:  # an aggregate always returns a row
            raise CollabError("the outbox backlog query returned nothing")
        return OutboxBacklog(pending=int(row["pending"]), parked=int(row["parked"]))

    async def set_thumbnail(self, org_id: str, diagram_id: str, *, version: int, url: str) -> bool:
        canonical = canonical_id(diagram_id)
        if canonical is None:
            return False
        async with self._transaction(org_id) as conn:
            moved = await conn.fetchval(_SET_THUMBNAIL, canonical, org_id, int4(version), url)
        return moved is not None


def _event(row: asyncpg.Record) -> OutboxEvent:
    return OutboxEvent(
        id=int(row["id"]),
        org_id=row["org_id"],
        diagram_id=str(row["diagram_id"]),
        type=row["type"],
        payload=json_object(row["payload"]),
        attempts=int(row["attempts"]),
        created_at=utc_datetime(row["created_at"]),
    )


def _text(value: str) -> str:
    # Postgres text cannot hold NUL, and an exception message may carry one.
    return value.replace("\x00", "\ufffd")
