"""``Outbox`` on the SQLite file of the embedded default.

A connection of its own to the store's database file (WAL, so its short
transactions and the store's wait for each other through ``busy_timeout``, never
fail). The embedded default runs one worker, so one processor claims; writes
still take ``BEGIN IMMEDIATE``, so a claim reads and leases its events under
the write lock and two claims could not interleave anyway.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import aiosqlite

from persistence.outbox import (
    OutboxBacklog,
    OutboxEvent,
    check_claim,
    check_delay,
    clip_error,
)
from persistence.rows import canonical_id, iso_utc, json_object, utc_datetime
from persistence.sqlite_connection import SqliteConnection

# Timestamps are fixed-width ISO text (``iso_utc``), so text comparison is time order.
_DUE = """
SELECT id FROM outbox_events
WHERE processed_at IS NULL AND parked_at IS NULL
  AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
  AND (claimed_until IS NULL OR claimed_until <= :now)
ORDER BY id LIMIT :limit
"""
_CLAIM = f"""
UPDATE outbox_events SET attempts = attempts + 1, claimed_until = :lease
WHERE id IN ({_DUE})
RETURNING id, org_id, diagram_id, type, payload, attempts, created_at
"""  # noqa: S608 - a constant subquery
# The claim that returned the event must still be the latest one: a processor whose
# lease ran out must not reschedule or park an event another processor now holds.
_RELEASE = """
UPDATE outbox_events SET {what}, claimed_until = NULL, last_error = :error
WHERE id = :id AND attempts = :attempts AND processed_at IS NULL AND parked_at IS NULL
"""
_RETRY = _RELEASE.format(what="next_attempt_at = :at")
_PARK = _RELEASE.format(what="parked_at = :at")


class SqliteOutbox:
    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clock = clock
        # The store made the file WAL already; saying so again costs nothing and keeps
        # this connection from ever taking the rollback journal.
        self._db = SqliteConnection(path, busy_timeout_ms=busy_timeout_ms, what="outbox")

    async def __aenter__(self) -> Self:
        await self._db.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._db.close()

    def _transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        return self._db.transaction(write=True)

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    # --- Outbox -------------------------------------------------------------------------------

    async def claim(self, *, limit: int, lease_s: float) -> list[OutboxEvent]:
        check_claim(limit, lease_s)
        now = self._now()
        params = {
            "now": iso_utc(now),
            "lease": iso_utc(now + timedelta(seconds=lease_s)),
            "limit": limit,
        }
        # An idle processor polls often: look without the write lock first, so polling
        # an empty outbox never makes the store's writes wait.
        async with self._db.locked() as conn:
            due = await conn.execute_fetchall(_DUE, {**params, "limit": 1})
        if not due:
            return []
        async with self._transaction() as conn:
            rows = await conn.execute_fetchall(_CLAIM, params)
        # RETURNING gives no order; callers get the oldest first.
        return sorted((_event(row) for row in rows), key=lambda event: event.id)

    async def complete(self, event: OutboxEvent) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "UPDATE outbox_events SET processed_at = ?, claimed_until = NULL "
                "WHERE id = ? AND processed_at IS NULL",
                (iso_utc(self._now()), event.id),
            )

    async def retry(self, event: OutboxEvent, *, error: str, delay_s: float) -> None:
        check_delay(delay_s)
        at = self._now() + timedelta(seconds=delay_s)
        async with self._transaction() as conn:
            await conn.execute(_RETRY, _release(event, error, at))

    async def park(self, event: OutboxEvent, *, error: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(_PARK, _release(event, error, self._now()))

    async def backlog(self) -> OutboxBacklog:
        async with self._transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT count(*) FILTER (WHERE parked_at IS NULL) AS pending, "
                "count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked "
                "FROM outbox_events WHERE processed_at IS NULL"
            )
        row = next(iter(rows))
        return OutboxBacklog(pending=int(row["pending"]), parked=int(row["parked"]))

    async def set_thumbnail(self, org_id: str, diagram_id: str, *, version: int, url: str) -> bool:
        canonical = canonical_id(diagram_id)
        if canonical is None:
            return False
        async with self._transaction() as conn:
            cursor = await conn.execute(
                """
                UPDATE diagrams SET thumbnail_url = ?, thumbnail_version = ?
                WHERE id = ? AND org_id = ? AND deleted_at IS NULL
                  AND (thumbnail_version IS NULL OR thumbnail_version < ?)
                """,
                (url, version, canonical, org_id, version),
            )
            changed = cursor.rowcount
        return changed > 0


def _event(row: sqlite3.Row) -> OutboxEvent:
    return OutboxEvent(
        id=int(row["id"]),
        org_id=row["org_id"],
        diagram_id=row["diagram_id"],
        type=row["type"],
        payload=json_object(row["payload"]),
        attempts=int(row["attempts"]),
        created_at=utc_datetime(row["created_at"]),
    )


def _release(event: OutboxEvent, error: str, at: datetime) -> dict[str, object]:
    return {
        "id": event.id,
        "attempts": event.attempts,
        "error": clip_error(error),
        "at": iso_utc(at),
    }
