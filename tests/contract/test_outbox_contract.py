"""The ``Outbox`` contract, run against every adapter (SQLite and Postgres).

Each test gets a database of its own (the session's Postgres database is shared
with other tests, whose events a claim would otherwise see); the stores write
the events, exactly as in production.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite
import asyncpg
import pytest

from core.errors import InvalidInput
from persistence.folder_blobs import FolderBlobStore
from persistence.models import NewContent
from persistence.outbox import Outbox, OutboxBacklog, OutboxEvent
from persistence.postgres_outbox import PostgresOutbox
from persistence.rows import EVENT_CREATED, EVENT_DELETED, EVENT_SAVED
from persistence.sqlite_outbox import SqliteOutbox
from tests.contract.conftest import PostgresBackend, SqliteBackend, Store, StoreBackend

XML = b'<?xml version="1.0" encoding="UTF-8"?>\n<definitions id="d"><process id="p"/></definitions>'
HOUR_S = 3600.0


@dataclass
class Bench:
    """A store and an outbox on one fresh database, and raw access to its table."""

    backend: StoreBackend
    store: Store
    outbox: Outbox

    async def create(self, org: str) -> str:
        record = await self.store.create(
            org,
            diagram_id=str(uuid.uuid4()),
            title="Order handling",
            project_id=None,
            content=NewContent(xml=XML, element_count=1),
            author="alice",
        )
        return record.summary.id

    async def save(self, org: str, diagram_id: str, expected_version: int) -> None:
        await self.store.save(
            org,
            diagram_id,
            expected_version=expected_version,
            author="bob",
            content=NewContent(xml=XML.replace(b'"p"', b'"q"'), element_count=1),
        )

    async def column(self, event_id: int, name: str) -> Any:
        # Column names come from the tests themselves, never from input.
        if isinstance(self.backend, SqliteBackend):
            async with aiosqlite.connect(self.backend.path) as conn:
                rows = list(
                    await conn.execute_fetchall(
                        f"SELECT {name} FROM outbox_events WHERE id = ?", (event_id,)
                    )
                )
            return rows[0][0]
        assert isinstance(self.backend, PostgresBackend)
        pg = await asyncpg.connect(self.backend.dsn)
        try:
            return await pg.fetchval(f"SELECT {name} FROM outbox_events WHERE id = $1", event_id)
        finally:
            await pg.close()


def outbox_on(backend: StoreBackend) -> SqliteOutbox | PostgresOutbox:
    if isinstance(backend, SqliteBackend):
        return SqliteOutbox(backend.path)
    assert isinstance(backend, PostgresBackend)
    return PostgresOutbox(backend.dsn)


@pytest.fixture
async def bench(store_backend: StoreBackend, blob_folder: FolderBlobStore) -> AsyncIterator[Bench]:
    backend = await store_backend.fresh()
    async with backend.store(blobs=blob_folder) as store:
        await store.migrate()
        async with outbox_on(backend) as outbox:
            yield Bench(backend, store, outbox)


async def claim_all(outbox: Outbox, *, lease_s: float = HOUR_S) -> list[OutboxEvent]:
    return await outbox.claim(limit=100, lease_s=lease_s)


# --- claiming -----------------------------------------------------------------------------------


async def test_a_claim_returns_the_stores_events_oldest_first(bench: Bench, org: str) -> None:
    first = await bench.create(org)
    await bench.save(org, first, 1)
    second = await bench.create(org)
    await bench.store.delete(org, second)

    events = await claim_all(bench.outbox)

    assert [(e.diagram_id, e.type, e.payload["version"]) for e in events] == [
        (first, EVENT_CREATED, 1),
        (first, EVENT_SAVED, 2),
        (second, EVENT_CREATED, 1),
        (second, EVENT_DELETED, 1),
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert {e.org_id for e in events} == {org}
    assert {e.attempts for e in events} == {1}
    assert events[0].payload == {"diagramId": first, "version": 1, "author": "alice"}
    assert all(e.created_at.utcoffset() is not None for e in events)


async def test_a_leased_event_is_not_claimed_again(bench: Bench, org: str) -> None:
    await bench.create(org)
    assert len(await claim_all(bench.outbox)) == 1
    assert await claim_all(bench.outbox) == []
    assert await bench.outbox.backlog() == OutboxBacklog(pending=1, parked=0)


async def test_a_claim_takes_at_most_its_limit(bench: Bench, org: str) -> None:
    for _ in range(5):
        await bench.create(org)
    first = await bench.outbox.claim(limit=2, lease_s=HOUR_S)
    rest = await bench.outbox.claim(limit=10, lease_s=HOUR_S)
    assert len(first) == 2
    assert len(rest) == 3
    assert max(e.id for e in first) < min(e.id for e in rest)


async def test_an_expired_lease_lets_the_event_be_claimed_again(bench: Bench, org: str) -> None:
    await bench.create(org)
    (first,) = await claim_all(bench.outbox, lease_s=0)
    (again,) = await claim_all(bench.outbox)
    assert again.id == first.id
    assert (first.attempts, again.attempts) == (1, 2)


async def test_one_processor_serves_every_organization(
    bench: Bench, org: str, other_org: str
) -> None:
    await bench.create(org)
    await bench.create(other_org)
    assert {e.org_id for e in await claim_all(bench.outbox)} == {org, other_org}


async def test_bad_claim_arguments_are_refused(bench: Bench) -> None:
    for limit, lease_s in ((0, 1.0), (1, -1.0), (1, float("nan")), (1, 1e12)):
        with pytest.raises(InvalidInput):
            await bench.outbox.claim(limit=limit, lease_s=lease_s)


# --- outcomes -----------------------------------------------------------------------------------


async def test_a_completed_event_is_never_claimed_again(bench: Bench, org: str) -> None:
    await bench.create(org)
    await bench.create(org)
    done, other = await claim_all(bench.outbox, lease_s=0)
    await bench.outbox.complete(done)
    await bench.outbox.complete(done)  # idempotent

    assert [e.id for e in await claim_all(bench.outbox)] == [other.id]
    assert await bench.outbox.backlog() == OutboxBacklog(pending=1, parked=0)
    assert await bench.column(done.id, "processed_at") is not None


async def test_a_retried_event_comes_back_when_due(bench: Bench, org: str) -> None:
    await bench.create(org)
    (event,) = await claim_all(bench.outbox)
    await bench.outbox.retry(event, error="blob store down", delay_s=0)

    (again,) = await claim_all(bench.outbox)
    assert (again.id, again.attempts) == (event.id, 2)
    assert await bench.column(event.id, "last_error") == "blob store down"


async def test_a_retry_waits_its_delay(bench: Bench, org: str) -> None:
    await bench.create(org)
    (event,) = await claim_all(bench.outbox)
    await bench.outbox.retry(event, error="later", delay_s=HOUR_S)
    assert await claim_all(bench.outbox) == []
    assert await bench.outbox.backlog() == OutboxBacklog(pending=1, parked=0)
    with pytest.raises(InvalidInput):
        await bench.outbox.retry(event, error="x", delay_s=-1)


async def test_a_parked_event_is_kept_for_an_operator(bench: Bench, org: str) -> None:
    await bench.create(org)
    await bench.create(org)
    parked, other = await claim_all(bench.outbox, lease_s=0)
    await bench.outbox.park(parked, error="x" * 10_000)

    assert [e.id for e in await claim_all(bench.outbox)] == [other.id]
    assert await bench.outbox.backlog() == OutboxBacklog(pending=1, parked=1)
    assert await bench.column(parked.id, "parked_at") is not None
    assert 0 < len(await bench.column(parked.id, "last_error")) <= 2000


async def test_a_processor_whose_lease_ran_out_cannot_release_the_event(
    bench: Bench, org: str
) -> None:
    await bench.create(org)
    (stale,) = await claim_all(bench.outbox, lease_s=0)
    (current,) = await claim_all(bench.outbox)  # another processor holds it now
    await bench.outbox.retry(stale, error="stale", delay_s=0)
    await bench.outbox.park(stale, error="stale")

    assert await claim_all(bench.outbox) == []  # still leased to the current claim
    assert await bench.outbox.backlog() == OutboxBacklog(pending=1, parked=0)
    await bench.outbox.complete(current)
    assert await bench.outbox.backlog() == OutboxBacklog(pending=0, parked=0)


async def test_error_text_may_hold_anything(bench: Bench, org: str) -> None:
    await bench.create(org)
    (event,) = await claim_all(bench.outbox)
    await bench.outbox.retry(event, error="nul \x00 and 'quotes'; --", delay_s=0)
    assert "'quotes'; --" in await bench.column(event.id, "last_error")


# --- thumbnails ---------------------------------------------------------------------------------


async def test_a_thumbnail_only_moves_forward(bench: Bench, org: str) -> None:
    diagram_id = await bench.create(org)

    async def shown() -> str | None:
        return (await bench.store.get(org, diagram_id)).summary.thumbnail_url

    assert await shown() is None
    assert await bench.outbox.set_thumbnail(org, diagram_id, version=2, url="/t?v=2")
    assert await shown() == "/t?v=2"
    # An older or the same version (a late or repeated event) changes nothing.
    assert not await bench.outbox.set_thumbnail(org, diagram_id, version=1, url="/t?v=1")
    assert not await bench.outbox.set_thumbnail(org, diagram_id, version=2, url="/t?v=2b")
    assert await shown() == "/t?v=2"
    assert await bench.outbox.set_thumbnail(org, diagram_id, version=3, url="/t?v=3")
    assert await shown() == "/t?v=3"


async def test_a_thumbnail_stays_within_its_organization(
    bench: Bench, org: str, other_org: str
) -> None:
    diagram_id = await bench.create(org)
    assert not await bench.outbox.set_thumbnail(other_org, diagram_id, version=1, url="/x")
    assert not await bench.outbox.set_thumbnail(org, "not-a-uuid", version=1, url="/x")
    assert not await bench.outbox.set_thumbnail(org, str(uuid.uuid4()), version=1, url="/x")
    assert (await bench.store.get(org, diagram_id)).summary.thumbnail_url is None


async def test_a_deleted_diagram_gets_no_thumbnail(bench: Bench, org: str) -> None:
    diagram_id = await bench.create(org)
    await bench.store.delete(org, diagram_id)
    assert not await bench.outbox.set_thumbnail(org, diagram_id, version=1, url="/x")


# --- several processors (Postgres) --------------------------------------------------------------


@pytest.fixture
async def pg_backend(
    fresh_postgres_dsn: Callable[[], Awaitable[str]],
) -> PostgresBackend:
    return PostgresBackend(await fresh_postgres_dsn(), fresh_postgres_dsn)


@pytest.mark.postgres
async def test_concurrent_claimers_never_get_the_same_event(
    pg_backend: PostgresBackend, blob_folder: FolderBlobStore, org: str
) -> None:
    backend = pg_backend
    async with (
        backend.store(blobs=blob_folder) as store,
        PostgresOutbox(backend.dsn, pool_max=4) as one,
        PostgresOutbox(backend.dsn, pool_max=4) as two,
    ):
        await store.migrate()
        bench = Bench(backend, store, one)
        created = 60
        for _ in range(created):
            await bench.create(org)

        async def drain(outbox: PostgresOutbox) -> list[int]:
            taken: list[int] = []
            while batch := await outbox.claim(limit=3, lease_s=HOUR_S):
                taken += [event.id for event in batch]
            return taken

        # Four claim loops per outbox, all at once, each on its own connection.
        results = await asyncio.gather(*(drain(o) for o in (one, two) for _ in range(4)))

    taken = [event_id for result in results for event_id in result]
    assert len(taken) == created
    assert len(set(taken)) == created  # nobody got an event twice
    assert sum(1 for result in results if result) > 1  # the claims really ran side by side


@pytest.mark.postgres
async def test_a_claim_skips_events_another_claim_has_locked(
    pg_backend: PostgresBackend, blob_folder: FolderBlobStore, org: str
) -> None:
    backend = pg_backend
    async with backend.store(blobs=blob_folder) as store, PostgresOutbox(backend.dsn) as outbox:
        await store.migrate()
        bench = Bench(backend, store, outbox)
        await bench.create(org)
        await bench.create(org)
        holder = await asyncpg.connect(backend.dsn)
        try:
            async with holder.transaction():
                locked = await holder.fetchval(
                    "SELECT id FROM outbox_events ORDER BY id LIMIT 1 FOR UPDATE"
                )
                # Without SKIP LOCKED this claim would wait for the holder's commit:
                # the bound turns that wait into a failure instead of a hang.
                async with asyncio.timeout(10):
                    claimed = await outbox.claim(limit=10, lease_s=HOUR_S)
                assert locked not in [e.id for e in claimed]
                assert len(claimed) == 1
        finally:
            await holder.close()
        (rest,) = await outbox.claim(limit=10, lease_s=HOUR_S)
        assert rest.id == locked


@pytest.mark.postgres
async def test_the_outbox_runs_as_the_restricted_role(
    pg_backend: PostgresBackend, blob_folder: FolderBlobStore
) -> None:
    async with pg_backend.store(blobs=blob_folder) as store:
        await store.migrate()
        async with PostgresOutbox(pg_backend.dsn) as outbox:
            # The test server connects as a superuser, which may switch to the role: row-level
            # security on diagrams then holds for set_thumbnail as it does for the store.
            assert outbox.uses_app_role
