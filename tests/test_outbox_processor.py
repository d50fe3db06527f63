"""The outbox processor with the thumbnail handler, on SQLite and on Postgres.

Real stores and outboxes; the one fake is the blob store the handler writes
thumbnails to, which fails on purpose. The processor is driven one batch at a
time (``run_once``), so every test is a fixed sequence of steps, never a race
against a timer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lxml import etree

from core.errors import BlobStoreUnavailable
from persistence.folder_blobs import FolderBlobStore
from persistence.models import NewContent
from persistence.outbox import OutboxBacklog, OutboxEvent
from persistence.ports import BlobStore
from persistence.postgres_outbox import PostgresOutbox
from persistence.postgres_store import PostgresDiagramStore
from persistence.rows import EVENT_SAVED
from persistence.sqlite_outbox import SqliteOutbox
from persistence.sqlite_store import SqliteDiagramStore
from server.outbox import OutboxProcessor, backoff_delay
from server.settings import LimitSettings
from server.thumbnailer import Thumbnailer, thumbnail_key, thumbnail_url, thumbnail_version
from tests.samples import REFERENCE

A_1_0 = (REFERENCE / "A.1.0.bpmn").read_bytes()
A_2_0 = (REFERENCE / "A.2.0.bpmn").read_bytes()
SVG = "{http://www.w3.org/2000/svg}"

Store = SqliteDiagramStore | PostgresDiagramStore
Outbox = SqliteOutbox | PostgresOutbox


class FlakyBlobs:
    """The real blob folder, except that the first ``failures`` thumbnail writes fail."""

    def __init__(self, inner: BlobStore, failures: int) -> None:
        self._inner = inner
        self.failures = failures
        self.thumbnail_puts = 0

    async def ensure_ready(self) -> None:
        await self._inner.ensure_ready()

    async def put(self, key: str, data: bytes, *, content_type: str = "application/xml") -> None:
        if key.startswith("thumbnails/"):
            self.thumbnail_puts += 1
            if self.failures > 0:
                self.failures -= 1
                raise BlobStoreUnavailable("the bucket is on fire")
        await self._inner.put(key, data, content_type=content_type)

    async def get(self, key: str) -> bytes:
        return await self._inner.get(key)

    async def open(self, key: str, *, chunk_bytes: int = 65536) -> AsyncIterator[bytes]:
        return await self._inner.open(key, chunk_bytes=chunk_bytes)

    async def delete(self, key: str) -> None:
        await self._inner.delete(key)

    async def exists(self, key: str) -> bool:
        return await self._inner.exists(key)


@dataclass
class Rig:
    store: Store
    folder: FolderBlobStore
    outbox: Outbox
    org: str = field(default_factory=lambda: f"org-{uuid.uuid4().hex[:12]}")

    def processor(
        self,
        blobs: BlobStore | None = None,
        *,
        max_attempts: int = 3,
        batch_size: int = 10,
        extra: dict[str, Callable[[OutboxEvent], Awaitable[None]]] | None = None,
    ) -> OutboxProcessor:
        thumbnails = Thumbnailer(
            self.store,
            blobs or self.folder,
            self.outbox,
            xml_limits=LimitSettings().xml_limits(),
        )
        return OutboxProcessor(
            self.outbox,
            {**dict.fromkeys(Thumbnailer.EVENTS, thumbnails), **(extra or {})},
            poll_interval_s=0.01,
            batch_size=batch_size,
            max_attempts=max_attempts,
            lease_s=60,
            # No wait between attempts, so a retried event is due at the next batch.
            backoff_base_s=0,
            backoff_max_s=0,
        )

    async def create(self, xml: bytes = A_1_0) -> str:
        record = await self.store.create(
            self.org,
            diagram_id=str(uuid.uuid4()),
            title="Thumbnail me",
            project_id=None,
            content=NewContent(xml=xml, element_count=1),
            author="ada",
        )
        return record.summary.id

    async def save(self, diagram_id: str, xml: bytes, expected_version: int) -> None:
        await self.store.save(
            self.org,
            diagram_id,
            expected_version=expected_version,
            author="ada",
            content=NewContent(xml=xml, element_count=1),
        )

    async def shown(self, diagram_id: str) -> str | None:
        return (await self.store.get(self.org, diagram_id)).summary.thumbnail_url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with FolderBlobStore(tmp_path / "blobs") as folder:
        store: Store
        outbox: Outbox
        if request.param == "sqlite":
            path = tmp_path / "db" / "bpmn-collab.db"
            store = SqliteDiagramStore(path, blobs=folder, inline_max_bytes=1 << 20)
            outbox = SqliteOutbox(path)
        else:
            # A database of its own: the session's is shared, and so would its events be.
            dsn = await request.getfixturevalue("fresh_postgres_dsn")()
            store = PostgresDiagramStore(dsn, blobs=folder, inline_max_bytes=1 << 20)
            outbox = PostgresOutbox(dsn)
        async with store:
            await store.migrate()
            async with outbox:
                yield Rig(store, folder, outbox)


async def run_until_idle(processor: OutboxProcessor, *, rounds: int = 20) -> int:
    """Batches until a claim comes back empty; how many batches claimed something."""
    for done in range(rounds):
        if await processor.run_once() == 0:
            return done
    raise AssertionError(f"the outbox still had due events after {rounds} batches")


# --- thumbnails ---------------------------------------------------------------------------------


async def test_a_created_diagram_gets_its_thumbnail(rig: Rig) -> None:
    diagram_id = await rig.create()
    processor = rig.processor()
    assert await run_until_idle(processor) == 1

    assert await rig.shown(diagram_id) == thumbnail_url(diagram_id, 1)
    svg = await rig.folder.get(thumbnail_key(diagram_id, 1))
    root = etree.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert any(node.get("class") == "shape" for node in root.iter())
    assert processor.metrics.completed == 1
    assert await processor.backlog() == OutboxBacklog(pending=0, parked=0)


async def test_the_thumbnail_follows_saves_and_never_goes_back(rig: Rig) -> None:
    diagram_id = await rig.create(A_1_0)
    await rig.save(diagram_id, A_2_0, 1)
    blobs = FlakyBlobs(rig.folder, failures=0)
    processor = rig.processor(blobs)
    await run_until_idle(processor)

    # The created event drew the diagram as it is now (version 2); the saved event
    # then found nothing to do.
    assert await rig.shown(diagram_id) == thumbnail_url(diagram_id, 2)
    assert blobs.thumbnail_puts == 1
    assert processor.metrics.completed == 2
    assert not await rig.folder.exists(thumbnail_key(diagram_id, 1))


async def test_handling_an_event_again_changes_nothing(rig: Rig) -> None:
    diagram_id = await rig.create()
    blobs = FlakyBlobs(rig.folder, failures=0)
    thumbnails = Thumbnailer(rig.store, blobs, rig.outbox, xml_limits=LimitSettings().xml_limits())
    await run_until_idle(rig.processor(blobs))
    assert blobs.thumbnail_puts == 1
    before = await rig.folder.get(thumbnail_key(diagram_id, 1))

    # Redelivery (at least once): the same event again, by a second processor too.
    event = OutboxEvent(
        id=1,
        org_id=rig.org,
        diagram_id=diagram_id,
        type=EVENT_SAVED,
        payload={"diagramId": diagram_id, "version": 1},
        attempts=2,
        created_at=(await rig.store.get(rig.org, diagram_id)).summary.updated_at,
    )
    await asyncio.gather(thumbnails(event), thumbnails(event))
    assert blobs.thumbnail_puts == 1
    assert await rig.shown(diagram_id) == thumbnail_url(diagram_id, 1)
    assert await rig.folder.get(thumbnail_key(diagram_id, 1)) == before


async def test_a_failure_is_retried_until_it_succeeds(rig: Rig) -> None:
    diagram_id = await rig.create()
    blobs = FlakyBlobs(rig.folder, failures=2)
    processor = rig.processor(blobs, max_attempts=3)

    assert await processor.run_once() == 1
    assert await processor.run_once() == 1
    assert await rig.shown(diagram_id) is None
    assert (processor.metrics.retried, processor.metrics.completed) == (2, 0)
    assert await processor.backlog() == OutboxBacklog(pending=1, parked=0)

    assert await processor.run_once() == 1  # the third attempt, the last one allowed
    assert await rig.shown(diagram_id) == thumbnail_url(diagram_id, 1)
    assert (processor.metrics.retried, processor.metrics.completed) == (2, 1)
    assert processor.metrics.parked == 0
    assert await processor.backlog() == OutboxBacklog(pending=0, parked=0)


async def test_an_event_failing_every_attempt_is_parked_and_counted(rig: Rig) -> None:
    diagram_id = await rig.create()
    other = await rig.create()
    blobs = FlakyBlobs(rig.folder, failures=1000)
    processor = rig.processor(blobs, max_attempts=3)

    assert await run_until_idle(processor) == 3
    assert blobs.thumbnail_puts == 6  # two events, three attempts each, then no more
    assert processor.metrics.parked == 2
    assert processor.metrics.retried == 4
    assert await processor.backlog() == OutboxBacklog(pending=0, parked=2)
    assert await rig.shown(diagram_id) is None
    assert await rig.shown(other) is None

    # Parked events stay parked: the blob store is back, nothing is claimed again.
    blobs.failures = 0
    assert await processor.run_once() == 0


async def test_xml_that_does_not_parse_is_parked_at_once(rig: Rig) -> None:
    # The API refuses such XML; here it is what a store holds after the XML limits
    # were lowered, say. Retrying cannot help, so no crash loop and no backoff.
    diagram_id = await rig.create(b"<notBpmn/>")
    processor = rig.processor(max_attempts=5)
    assert await run_until_idle(processor) == 1
    assert processor.metrics.parked == 1
    assert processor.metrics.retried == 0
    assert await processor.backlog() == OutboxBacklog(pending=0, parked=1)
    assert await rig.shown(diagram_id) is None


async def test_a_deleted_diagram_is_delivered_without_a_thumbnail(rig: Rig) -> None:
    diagram_id = await rig.create()
    await rig.store.delete(rig.org, diagram_id)
    processor = rig.processor()
    await run_until_idle(processor)
    # Created and deleted: both delivered, nothing drawn.
    assert processor.metrics.completed == 2
    assert not await rig.folder.exists(thumbnail_key(diagram_id, 1))
    assert await processor.backlog() == OutboxBacklog(pending=0, parked=0)


# --- the background loop ------------------------------------------------------------------------


async def test_the_running_processor_draws_new_diagrams(rig: Rig) -> None:
    async with rig.processor() as processor:
        diagram_id = await rig.create()
        async with asyncio.timeout(10):
            # Written by the processor's own task: no event to await from here.
            while await rig.shown(diagram_id) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    assert processor.metrics.completed == 1


async def test_stopping_hands_unhandled_events_back(rig: Rig) -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def slow(event: OutboxEvent) -> None:
        started.set()
        await gate.wait()

    first = await rig.create()
    await rig.store.delete(rig.org, first)  # a second event, of the "slow" type
    processor = rig.processor(batch_size=2, extra={"diagram.deleted": slow})
    # The created event is handled, the deleted one is in hand when stopping begins.
    await processor.__aenter__()
    await started.wait()
    stopping = asyncio.create_task(processor.__aexit__(None, None, None))
    await asyncio.sleep(0)  # let __aexit__ set the stop flag
    gate.set()
    await stopping

    # Both were handled; nothing is left leased to a stopped processor.
    assert processor.metrics.completed == 2
    assert await rig.outbox.claim(limit=10, lease_s=60) == []


async def test_stopping_releases_the_rest_of_a_batch(rig: Rig) -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def slow(event: OutboxEvent) -> None:
        started.set()
        await gate.wait()

    first = await rig.create()
    await rig.save(first, A_2_0, 1)
    # The created event blocks; the saved event waits behind it in the same batch.
    processor = rig.processor(batch_size=2, extra={"diagram.created": slow})
    await processor.__aenter__()
    await started.wait()
    stopping = asyncio.create_task(processor.__aexit__(None, None, None))
    await asyncio.sleep(0)
    gate.set()
    await stopping

    (released,) = await rig.outbox.claim(limit=10, lease_s=60)
    assert released.type == EVENT_SAVED
    assert released.attempts == 2  # claimed once by the stopped processor
    assert processor.metrics.completed == 1


# --- pieces -------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_with_half_of_it_random() -> None:
    def low(attempt: int) -> float:
        return backoff_delay(attempt, base_s=2, max_s=60, rand=lambda: 0.0)

    def high(attempt: int) -> float:
        return backoff_delay(attempt, base_s=2, max_s=60, rand=lambda: 1.0)

    assert [high(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert [low(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert high(10_000) == 60
    assert backoff_delay(3, base_s=2, max_s=60, rand=lambda: 0.5) == 6


def test_the_thumbnail_url_names_its_version() -> None:
    diagram_id = str(uuid.uuid4())
    assert thumbnail_version(thumbnail_url(diagram_id, 7)) == 7
    assert thumbnail_version(None) is None
    assert thumbnail_version("") is None
    assert thumbnail_version(f"/api/diagrams/{diagram_id}/thumbnail.svg") is None
    assert thumbnail_version("/x.svg?v=0") is None
    assert thumbnail_version("/x.svg?w=1&v=12") == 12
