"""The ``DiagramStore`` contract, run against every adapter (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from core.errors import (
    BlobStoreUnavailable,
    CollabError,
    DiagramExists,
    DiagramNotFound,
    InvalidCursor,
    InvalidInput,
    StoreUnavailable,
    VersionConflict,
    VersionNotFound,
)
from persistence.content import read_xml
from persistence.cursor import encode_diagram_cursor, encode_version_cursor
from persistence.folder_blobs import FolderBlobStore
from persistence.migrator import load_migrations
from persistence.models import DiagramRecord, NewContent, Principal, StoredXml
from persistence.postgres_store import PostgresDiagramStore
from tests.contract.conftest import INLINE_MAX_BYTES, Store, StoreBackend
from tests.fixtures.postgres import admin_dsn

_HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n<definitions id="defs">'
_TAIL = b"</definitions>"


def bpmn(size: int = 120, marker: str = "a") -> bytes:
    """XML of exactly ``size`` bytes, distinct per ``marker``."""
    body = f'<process id="p-{marker}"/>'.encode()
    pad = size - len(_HEAD) - len(body) - len(_TAIL) - len(b"<!---->")
    if pad < 0:
        raise ValueError(f"{size} bytes is too small for a test document")
    return _HEAD + body + b"<!--" + b"x" * pad + b"-->" + _TAIL


SMALL = bpmn(120)
LARGE = bpmn(INLINE_MAX_BYTES * 8)


def content(
    xml: bytes = SMALL,
    *,
    elements: int = 3,
    crdt: bytes | None = b"\x01\x02\x00",
    metadata: dict[str, Any] | None = None,
) -> NewContent:
    return NewContent(
        xml=xml,
        element_count=elements,
        crdt_state=crdt,
        metadata={"source": "test"} if metadata is None else metadata,
    )


async def create(
    store: Store,
    org: str,
    *,
    title: str = "Order handling",
    project_id: str | None = None,
    xml: bytes = SMALL,
    diagram_id: str | None = None,
    crdt: bytes | None = b"\x01\x02\x00",
) -> DiagramRecord:
    return await store.create(
        org,
        diagram_id=diagram_id or str(uuid.uuid4()),
        title=title,
        project_id=project_id,
        content=content(xml, crdt=crdt),
        author="alice",
        message="first",
    )


def assert_utc(*values: Any) -> None:
    for value in values:
        assert value.tzinfo is not None, value
        assert value.utcoffset() == timedelta(0), value


# --- create and get -------------------------------------------------------------------------


async def test_create_returns_version_1_with_everything_it_was_given(
    store: Store, org: str
) -> None:
    diagram_id = str(uuid.uuid4())
    metadata = {"n": 1, "nested": {"list": [1, "two", None, True]}, "text": "Grüße"}
    created = await store.create(
        org,
        diagram_id=diagram_id,
        title="Order handling",
        project_id="proj-1",
        content=content(SMALL, elements=7, crdt=b"\x00\xffcrdt", metadata=metadata),
        author="alice",
    )

    summary = created.summary
    assert (summary.id, summary.org_id, summary.project_id) == (diagram_id, org, "proj-1")
    assert (summary.title, summary.version, summary.element_count) == ("Order handling", 1, 7)
    assert summary.created_by == "alice"
    assert summary.thumbnail_url is None
    assert_utc(summary.created_at, summary.updated_at)
    assert summary.created_at == summary.updated_at
    assert created.xml == StoredXml(inline=SMALL, blob_key=None, size=len(SMALL))
    assert created.crdt_state == b"\x00\xffcrdt"
    assert created.crdt_epoch == 0
    assert created.metadata == metadata
    assert await store.get(org, diagram_id) == created


async def test_create_writes_version_1_and_a_created_event(
    store: Store, store_backend: StoreBackend, org: str
) -> None:
    created = await create(store, org)
    diagram_id = created.summary.id

    assert await store_backend.version_revs(diagram_id) == [1]
    assert await store_backend.events(diagram_id) == [
        ("diagram.created", {"diagramId": diagram_id, "version": 1, "author": "alice"})
    ]
    version = await store.get_version(org, diagram_id, 1)
    assert (version.rev, version.author, version.message) == (1, "alice", "first")
    assert version.xml == created.xml
    assert version.created_at == created.summary.updated_at
    assert_utc(version.created_at)


async def test_xml_over_the_inline_limit_goes_to_the_blob_store(
    store: Store, org: str, blob_folder: FolderBlobStore
) -> None:
    at_limit = bpmn(INLINE_MAX_BYTES, marker="limit")
    over = bpmn(INLINE_MAX_BYTES + 1, marker="over")

    inline = await create(store, org, xml=at_limit)
    blob = await create(store, org, xml=over)

    assert inline.xml == StoredXml(inline=at_limit, blob_key=None, size=INLINE_MAX_BYTES)
    key = f"diagrams/{blob.summary.id}/1.bpmn"
    assert blob.xml == StoredXml(inline=None, blob_key=key, size=len(over))
    assert await blob_folder.get(key) == over
    assert await read_xml(blob_folder, (await store.get(org, blob.summary.id)).xml) == over
    assert not await blob_folder.exists(f"diagrams/{inline.summary.id}/1.bpmn")


async def test_create_with_a_taken_id_is_a_conflict(store: Store, org: str, other_org: str) -> None:
    created = await create(store, org)

    for owner in (org, other_org):
        with pytest.raises(DiagramExists) as caught:
            await create(store, owner, diagram_id=created.summary.id, title="Other")
        assert caught.value.code == "diagram_exists"
    assert (await store.get(org, created.summary.id)).summary.title == "Order handling"


async def test_create_refuses_an_id_that_is_not_a_uuid(store: Store, org: str) -> None:
    with pytest.raises(InvalidInput):
        await create(store, org, diagram_id="not-a-uuid")


async def test_ids_are_matched_in_any_uuid_spelling(store: Store, org: str) -> None:
    created = await create(store, org)

    found = await store.get(org, created.summary.id.upper())

    assert found.summary.id == created.summary.id


async def test_a_failing_blob_write_leaves_no_diagram(
    store: Store, store_backend: StoreBackend, org: str, blob_folder: FolderBlobStore
) -> None:
    diagram_id = str(uuid.uuid4())
    async with store_backend.store(blobs=FailingBlobs(blob_folder)) as failing:
        with pytest.raises(BlobStoreUnavailable):
            await create(failing, org, xml=LARGE, diagram_id=diagram_id)

    with pytest.raises(DiagramNotFound):
        await store.get(org, diagram_id)
    assert await store_backend.version_revs(diagram_id) == []
    assert await store_backend.events(diagram_id) == []


# --- organizations --------------------------------------------------------------------------


def _every_scoped_call(
    store: Store, org: str, diagram_id: str
) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: store.get(org, diagram_id),
        lambda: store.save(org, diagram_id, expected_version=1, author="mallory", title="mine"),
        lambda: store.save(
            org, diagram_id, expected_version=1, author="mallory", content=content(LARGE)
        ),
        lambda: store.delete(org, diagram_id),
        lambda: store.list_versions(org, diagram_id, limit=10),
        lambda: store.get_version(org, diagram_id, 1),
        lambda: store.save_crdt_state(org, diagram_id, version=1, crdt_state=b"mallory"),
        lambda: store.bump_epoch(org, diagram_id),
    ]


async def test_another_orgs_diagram_does_not_exist(
    store: Store, store_backend: StoreBackend, org: str, other_org: str
) -> None:
    created = await create(store, org)
    diagram_id = created.summary.id

    for call in _every_scoped_call(store, other_org, diagram_id):
        with pytest.raises(DiagramNotFound):
            await call()
    assert (await store.list(other_org, limit=100)).items == []
    assert (await store.list(other_org, limit=100, query="order")).items == []

    # Nothing the other org tried changed anything.
    assert await store.get(org, diagram_id) == created
    assert await store_backend.version_revs(diagram_id) == [1]


@pytest.mark.parametrize(
    "bad_id", ["not-a-uuid", "", "'; DROP TABLE diagrams; --", "../../etc/passwd", "1" * 300]
)
async def test_an_id_that_is_not_a_uuid_is_not_found(store: Store, org: str, bad_id: str) -> None:
    for call in _every_scoped_call(store, org, bad_id):
        with pytest.raises(DiagramNotFound):
            await call()


# --- save -----------------------------------------------------------------------------------


async def test_save_writes_the_next_version_row_and_a_saved_event(
    store: Store, store_backend: StoreBackend, org: str
) -> None:
    created = await create(store, org)
    diagram_id = created.summary.id
    new_xml = bpmn(150, marker="v2")

    saved = await store.save(
        org,
        diagram_id,
        expected_version=1,
        author="bob",
        title="Order handling v2",
        content=content(new_xml, elements=9, crdt=None, metadata={"k": [1, 2]}),
        message="second",
    )

    assert saved.summary.version == 2
    assert saved.summary.title == "Order handling v2"
    assert saved.summary.element_count == 9
    assert saved.summary.created_at == created.summary.created_at
    assert saved.summary.created_by == "alice"
    assert saved.summary.updated_at > created.summary.updated_at
    assert_utc(saved.summary.updated_at)
    assert saved.xml == StoredXml(inline=new_xml, blob_key=None, size=len(new_xml))
    assert saved.crdt_state is None
    assert saved.metadata == {"k": [1, 2]}
    assert await store.get(org, diagram_id) == saved

    assert await store_backend.version_revs(diagram_id) == [1, 2]
    v2 = await store.get_version(org, diagram_id, 2)
    assert (v2.author, v2.message, v2.element_count) == ("bob", "second", 9)
    assert v2.xml == saved.xml
    assert v2.metadata == {"k": [1, 2]}
    events = await store_backend.events(diagram_id)
    assert events[-1] == (
        "diagram.saved",
        {"diagramId": diagram_id, "version": 2, "author": "bob"},
    )
    assert len(events) == 2
    # The first version is still there, unchanged.
    assert (await store.get_version(org, diagram_id, 1)).xml == created.xml


@pytest.mark.parametrize("xml", [SMALL, LARGE], ids=["inline", "blob"])
async def test_save_without_content_keeps_the_xml_and_without_title_keeps_the_title(
    store: Store, org: str, blob_folder: FolderBlobStore, xml: bytes
) -> None:
    created = await create(store, org, xml=xml)
    diagram_id = created.summary.id

    saved = await store.save(org, diagram_id, expected_version=1, author="bob")

    assert saved.summary.version == 2
    assert saved.summary.title == created.summary.title
    assert saved.summary.element_count == created.summary.element_count
    assert saved.xml == created.xml  # same inline bytes, or the same blob key
    assert (saved.crdt_state, saved.metadata) == (created.crdt_state, created.metadata)
    v2 = await store.get_version(org, diagram_id, 2)
    assert v2.xml == created.xml
    assert await read_xml(blob_folder, v2.xml) == xml
    assert not await blob_folder.exists(f"diagrams/{diagram_id}/2.bpmn")

    renamed = await store.save(org, diagram_id, expected_version=2, author="bob", title="Renamed")
    assert (renamed.summary.title, renamed.summary.version) == ("Renamed", 3)
    assert renamed.xml == created.xml


async def test_save_of_large_xml_writes_the_versions_blob(
    store: Store, org: str, blob_folder: FolderBlobStore
) -> None:
    created = await create(store, org)
    large = bpmn(INLINE_MAX_BYTES * 4, marker="large")

    saved = await store.save(
        org, created.summary.id, expected_version=1, author="bob", content=content(large)
    )

    key = f"diagrams/{created.summary.id}/2.bpmn"
    assert saved.xml == StoredXml(inline=None, blob_key=key, size=len(large))
    assert await blob_folder.get(key) == large


async def test_save_on_a_stale_version_is_a_conflict_naming_the_current_one(
    store: Store, store_backend: StoreBackend, org: str
) -> None:
    created = await create(store, org)
    diagram_id = created.summary.id
    await store.save(org, diagram_id, expected_version=1, author="bob", title="B")

    for expected in (1, 0, 7, 2**40):
        with pytest.raises(VersionConflict) as caught:
            await store.save(org, diagram_id, expected_version=expected, author="carol", title="C")
        assert caught.value.current_version == 2
        assert caught.value.expected_version == expected

    assert (await store.get(org, diagram_id)).summary.title == "B"
    assert await store_backend.version_revs(diagram_id) == [1, 2]


async def test_save_of_a_missing_diagram_is_not_found(store: Store, org: str) -> None:
    with pytest.raises(DiagramNotFound):
        await store.save(org, str(uuid.uuid4()), expected_version=1, author="bob", title="x")


async def test_a_failing_blob_write_rolls_the_save_back(
    store: Store, store_backend: StoreBackend, org: str, blob_folder: FolderBlobStore
) -> None:
    created = await create(store, org)
    diagram_id = created.summary.id

    async with store_backend.store(blobs=FailingBlobs(blob_folder)) as failing:
        with pytest.raises(BlobStoreUnavailable):
            await failing.save(
                org, diagram_id, expected_version=1, author="bob", content=content(LARGE)
            )

    assert await store.get(org, diagram_id) == created
    assert await store_backend.version_revs(diagram_id) == [1]
    assert [kind for kind, _ in await store_backend.events(diagram_id)] == ["diagram.created"]
    # The version was not used up: the same save goes through on a working store.
    saved = await store.save(
        org, diagram_id, expected_version=1, author="bob", content=content(LARGE)
    )
    assert saved.summary.version == 2


async def test_concurrent_saves_of_one_version_have_exactly_one_winner(
    store: Store, store_backend: StoreBackend, org: str
) -> None:
    created = await create(store, org)
    diagram_id = created.summary.id

    results = await asyncio.gather(
        *(
            store.save(org, diagram_id, expected_version=1, author=f"u{i}", title=f"T{i}")
            for i in range(50)
        ),
        return_exceptions=True,
    )

    winners = [r for r in results if isinstance(r, DiagramRecord)]
    conflicts = [r for r in results if isinstance(r, VersionConflict)]
    assert len(winners) == 1, [r for r in results if not isinstance(r, VersionConflict)]
    assert len(conflicts) == 49
    assert all(c.current_version == 2 and c.expected_version == 1 for c in conflicts)
    final = await store.get(org, diagram_id)
    assert final.summary.version == 2
    assert final.summary.title == winners[0].summary.title
    assert await store_backend.version_revs(diagram_id) == [1, 2]
    assert len(await store_backend.events(diagram_id)) == 2


async def test_concurrent_saves_of_large_xml_leave_the_winners_blob(
    store_backend: StoreBackend, blob_folder: FolderBlobStore, org: str
) -> None:
    recording = RecordingBlobs(blob_folder)
    async with store_backend.store(blobs=recording) as store:
        await store.migrate()
        created = await create(store, org, xml=LARGE)
        diagram_id = created.summary.id
        documents = [bpmn(INLINE_MAX_BYTES * 4, marker=f"saver-{i}") for i in range(50)]

        results = await asyncio.gather(
            *(
                store.save(
                    org, diagram_id, expected_version=1, author=f"u{i}", content=content(doc)
                )
                for i, doc in enumerate(documents)
            ),
            return_exceptions=True,
        )

        won = [i for i, r in enumerate(results) if isinstance(r, DiagramRecord)]
        assert len(won) == 1, [r for r in results if not isinstance(r, VersionConflict)]
        assert sum(isinstance(r, VersionConflict) for r in results) == 49
        key = f"diagrams/{diagram_id}/2.bpmn"
        assert await blob_folder.get(key) == documents[won[0]]
        # Losers never touched the key: the winner wrote it, once.
        assert recording.puts.count(key) == 1
        final = await store.get(org, diagram_id)
        assert final.xml == StoredXml(inline=None, blob_key=key, size=len(documents[won[0]]))
        assert await store_backend.version_revs(diagram_id) == [1, 2]


# --- CRDT state and epoch ------------------------------------------------------------------


async def test_the_first_crdt_state_of_a_version_wins(
    store: Store, store_backend: StoreBackend, org: str
) -> None:
    created = await create(store, org, crdt=None)
    diagram_id = created.summary.id

    first = await store.save_crdt_state(org, diagram_id, version=1, crdt_state=b"first")
    second = await store.save_crdt_state(org, diagram_id, version=1, crdt_state=b"second")

    assert (first, second) == (b"first", b"first")
    stored = await store.get(org, diagram_id)
    assert stored.crdt_state == b"first"
    # Only the state changed: no new version, no event, the same updated_at.
    assert stored == dataclasses.replace(created, crdt_state=b"first")
    assert (await store.get_version(org, diagram_id, 1)).crdt_state == b"first"
    assert await store_backend.version_revs(diagram_id) == [1]
    assert [kind for kind, _ in await store_backend.events(diagram_id)] == ["diagram.created"]


async def test_a_version_created_with_a_crdt_state_keeps_it(store: Store, org: str) -> None:
    created = await create(store, org, crdt=b"from-create")

    kept = await store.save_crdt_state(org, created.summary.id, version=1, crdt_state=b"from-room")

    assert kept == b"from-create"
    assert await store.get(org, created.summary.id) == created
    assert (await store.get_version(org, created.summary.id, 1)).crdt_state == b"from-create"


async def test_concurrent_first_crdt_states_agree_on_one(store: Store, org: str) -> None:
    created = await create(store, org, crdt=None)
    diagram_id = created.summary.id
    states = [f"state-{i}".encode() for i in range(20)]

    results = await asyncio.gather(
        *(store.save_crdt_state(org, diagram_id, version=1, crdt_state=state) for state in states)
    )

    assert len(set(results)) == 1
    assert results[0] in states
    assert (await store.get(org, diagram_id)).crdt_state == results[0]
    assert (await store.get_version(org, diagram_id, 1)).crdt_state == results[0]


async def test_a_crdt_state_for_a_version_that_moved_on_is_a_conflict(
    store: Store, org: str
) -> None:
    created = await create(store, org, crdt=None)
    diagram_id = created.summary.id
    await store.save(org, diagram_id, expected_version=1, author="bob", title="B")

    for stale in (1, 3, 2**40):
        with pytest.raises(VersionConflict) as caught:
            await store.save_crdt_state(org, diagram_id, version=stale, crdt_state=b"late")
        assert (caught.value.current_version, caught.value.expected_version) == (2, stale)
    assert (await store.get(org, diagram_id)).crdt_state is None

    # The current version takes it, on its own version row only.
    assert await store.save_crdt_state(org, diagram_id, version=2, crdt_state=b"v2") == b"v2"
    assert (await store.get(org, diagram_id)).crdt_state == b"v2"
    assert (await store.get_version(org, diagram_id, 2)).crdt_state == b"v2"
    assert (await store.get_version(org, diagram_id, 1)).crdt_state is None


async def test_crdt_calls_on_a_missing_or_deleted_diagram_are_not_found(
    store: Store, org: str
) -> None:
    deleted = await create(store, org, crdt=None)
    await store.delete(org, deleted.summary.id)

    for diagram_id in (deleted.summary.id, str(uuid.uuid4())):
        with pytest.raises(DiagramNotFound):
            await store.save_crdt_state(org, diagram_id, version=1, crdt_state=b"x")
        with pytest.raises(DiagramNotFound):
            await store.bump_epoch(org, diagram_id)


async def test_another_org_cannot_set_a_crdt_state(store: Store, org: str, other_org: str) -> None:
    created = await create(store, org, crdt=None)
    diagram_id = created.summary.id

    with pytest.raises(DiagramNotFound):
        await store.save_crdt_state(other_org, diagram_id, version=1, crdt_state=b"mallory")
    with pytest.raises(DiagramNotFound):
        await store.bump_epoch(other_org, diagram_id)

    assert await store.get(org, diagram_id) == created
    assert (await store.get_version(org, diagram_id, 1)).crdt_state is None
    assert await store.save_crdt_state(org, diagram_id, version=1, crdt_state=b"ours") == b"ours"


async def test_bump_epoch_increments_it_and_clears_the_crdt_state(
    store: Store, store_backend: StoreBackend, org: str
) -> None:
    created = await create(store, org, crdt=b"epoch-0")
    diagram_id = created.summary.id

    assert await store.bump_epoch(org, diagram_id) == 1

    bumped = await store.get(org, diagram_id)
    assert (bumped.crdt_epoch, bumped.crdt_state) == (1, None)
    # Nothing else moved: same version, same updated_at, no event.
    assert bumped == dataclasses.replace(created, crdt_epoch=1, crdt_state=None)
    assert await store_backend.version_revs(diagram_id) == [1]
    assert [kind for kind, _ in await store_backend.events(diagram_id)] == ["diagram.created"]

    # The document rebuilt from the XML becomes the state of the same version.
    rebuilt = await store.save_crdt_state(org, diagram_id, version=1, crdt_state=b"epoch-1")
    assert rebuilt == b"epoch-1"
    assert (await store.get(org, diagram_id)).crdt_state == b"epoch-1"
    assert (await store.get_version(org, diagram_id, 1)).crdt_state == b"epoch-1"

    assert await store.bump_epoch(org, diagram_id) == 2
    assert (await store.get(org, diagram_id)).crdt_epoch == 2


async def test_the_epoch_survives_saves_and_is_per_diagram(store: Store, org: str) -> None:
    one = await create(store, org)
    two = await create(store, org)
    await store.bump_epoch(org, one.summary.id)

    saved = await store.save(
        org, one.summary.id, expected_version=1, author="bob", content=content(crdt=b"v2")
    )

    assert (saved.crdt_epoch, saved.crdt_state) == (1, b"v2")
    assert (await store.get(org, one.summary.id)).crdt_epoch == 1
    assert (await store.get(org, two.summary.id)).crdt_epoch == 0


async def test_new_xml_without_a_crdt_state_moves_the_epoch(store: Store, org: str) -> None:
    created = await create(store, org)  # created with a CRDT state
    diagram_id = created.summary.id
    assert created.crdt_state is not None

    # A title-only save keeps the document; a save with its own state keeps it too.
    titled = await store.save(org, diagram_id, expected_version=1, author="bob", title="T")
    assert (titled.crdt_epoch, titled.crdt_state) == (0, created.crdt_state)
    folded = await store.save(
        org, diagram_id, expected_version=2, author="bob", content=content(crdt=b"folded")
    )
    assert (folded.crdt_epoch, folded.crdt_state) == (0, b"folded")

    # New XML with no state replaces the document clients hold: they must reload.
    replaced = await store.save(
        org, diagram_id, expected_version=3, author="bob", content=content(crdt=None)
    )
    assert (replaced.crdt_epoch, replaced.crdt_state) == (1, None)
    # No state now: nothing a client could hold, so further XML saves leave the epoch alone.
    again = await store.save(
        org, diagram_id, expected_version=4, author="bob", content=content(crdt=None)
    )
    assert again.crdt_epoch == 1


async def test_a_save_records_the_log_position_its_state_includes(store: Store, org: str) -> None:
    created = await create(store, org)
    diagram_id = created.summary.id
    assert created.log_position is None

    snapshot = dataclasses.replace(content(crdt=b"v2"), log_position="1700000000000-7")
    saved = await store.save(org, diagram_id, expected_version=1, author="bob", content=snapshot)
    assert saved.log_position == "1700000000000-7"
    assert (await store.get(org, diagram_id)).log_position == "1700000000000-7"
    assert (await store.get_version(org, diagram_id, 2)).log_position == "1700000000000-7"
    assert (await store.get_version(org, diagram_id, 1)).log_position is None

    # A title-only save keeps the document and so the position; new content states its own.
    titled = await store.save(org, diagram_id, expected_version=2, author="bob", title="T")
    assert titled.log_position == "1700000000000-7"
    assert (await store.get_version(org, diagram_id, 3)).log_position == "1700000000000-7"
    plain = await store.save(org, diagram_id, expected_version=3, author="bob", content=content())
    assert plain.log_position is None
    # A new epoch starts a new log: no position of the old one applies.
    await store.save(org, diagram_id, expected_version=4, author="bob", content=snapshot)
    await store.bump_epoch(org, diagram_id)
    assert (await store.get(org, diagram_id)).log_position is None


# --- delete ---------------------------------------------------------------------------------


async def test_delete_is_soft_and_final(
    store: Store, store_backend: StoreBackend, org: str
) -> None:
    created = await create(store, org)
    diagram_id = created.summary.id
    await store.save(org, diagram_id, expected_version=1, author="bob", title="B")

    await store.delete(org, diagram_id)

    for call in _every_scoped_call(store, org, diagram_id):
        with pytest.raises(DiagramNotFound):
            await call()
    assert (await store.list(org, limit=10)).items == []
    # The versions stay for audit.
    assert await store_backend.version_revs(diagram_id) == [1, 2]
    kinds = [kind for kind, _ in await store_backend.events(diagram_id)]
    assert kinds == ["diagram.created", "diagram.saved", "diagram.deleted"]


async def test_deleting_twice_or_deleting_nothing_is_not_found(store: Store, org: str) -> None:
    created = await create(store, org)
    await store.delete(org, created.summary.id)

    with pytest.raises(DiagramNotFound):
        await store.delete(org, created.summary.id)
    with pytest.raises(DiagramNotFound):
        await store.delete(org, str(uuid.uuid4()))


# --- list -----------------------------------------------------------------------------------


async def test_list_pages_through_everything_once_newest_first(store: Store, org: str) -> None:
    created = [await create(store, org, title=f"Diagram {i}") for i in range(25)]
    expected = [
        d.summary.id
        for d in sorted(created, key=lambda d: (d.summary.updated_at, d.summary.id), reverse=True)
    ]

    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = await store.list(org, limit=10, cursor=cursor)
        seen += [s.id for s in page.items]
        sizes.append(len(page.items))
        if page.next_cursor is None:
            break
        assert page.has_more
        cursor = page.next_cursor

    assert sizes == [10, 10, 5]
    assert seen == expected
    # Newest first: the last one created leads.
    assert seen[0] == created[-1].summary.id


async def test_list_has_no_next_cursor_when_the_last_page_is_exactly_full(
    store: Store, org: str
) -> None:
    for i in range(5):
        await create(store, org, title=f"D{i}")

    first = await store.list(org, limit=5)

    assert len(first.items) == 5
    assert first.next_cursor is None


async def test_list_returns_summaries_and_a_save_moves_a_diagram_to_the_front(
    store: Store, org: str
) -> None:
    older = await create(store, org, title="Older")
    newer = await create(store, org, title="Newer")

    before = await store.list(org, limit=10)
    await store.save(org, older.summary.id, expected_version=1, author="bob", title="Older v2")
    after = await store.list(org, limit=10)

    assert [s.id for s in before.items] == [newer.summary.id, older.summary.id]
    assert [s.id for s in after.items] == [older.summary.id, newer.summary.id]
    assert after.items[0].version == 2
    assert after.items[0].title == "Older v2"
    assert before.items[1] == older.summary
    for summary in after.items:
        assert_utc(summary.created_at, summary.updated_at)


async def test_list_searches_title_words_by_prefix(store: Store, org: str) -> None:
    order = await create(store, org, title="Order handling")
    await create(store, org, title="Invoice approval")
    await create(store, org, title="Shipping")

    async def found(query: str) -> list[str]:
        return [s.id for s in (await store.list(org, limit=10, query=query)).items]

    for query in ("ord", "hand", "ORD", "order handling", "hand ord", "ord!", "  Order  "):
        assert await found(query) == [order.summary.id], query
    for query in ("xyz", "rder", "order xyz", "handlings", "') OR 1=1 --"):
        assert await found(query) == [], query
    # Operator characters alone leave no word: no filter, and no error.
    assert len(await found("&|!:*()'\\")) == 3


async def test_list_filters_by_project_and_combines_filters(store: Store, org: str) -> None:
    in_p1 = [await create(store, org, title=f"Order {i}", project_id="p1") for i in range(3)]
    await create(store, org, title="Order other", project_id="p2")
    await create(store, org, title="Order none")

    p1 = await store.list(org, limit=10, project_id="p1")
    assert {s.id for s in p1.items} == {d.summary.id for d in in_p1}
    assert all(s.project_id == "p1" for s in p1.items)

    first = await store.list(org, limit=2, project_id="p1", query="ord")
    assert first.next_cursor is not None
    rest = await store.list(org, limit=2, project_id="p1", query="ord", cursor=first.next_cursor)
    assert rest.next_cursor is None
    assert {s.id for s in first.items + rest.items} == {d.summary.id for d in in_p1}


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "",
        "x" * 1000,
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(orjson.dumps({"k": "d", "u": "yesterday", "i": "x"})).decode(),
        base64.urlsafe_b64encode(
            orjson.dumps({"k": "d", "u": "2024-01-01T00:00:00", "i": str(uuid.uuid4())})
        ).decode(),
        encode_version_cursor(3),
    ],
    ids=["word", "symbols", "empty", "long", "list", "bad-fields", "naive-time", "version-cursor"],
)
async def test_list_refuses_a_cursor_it_did_not_issue(store: Store, org: str, cursor: str) -> None:
    await create(store, org)

    with pytest.raises(InvalidCursor):
        await store.list(org, limit=10, cursor=cursor)


async def test_list_refuses_a_limit_out_of_range(store: Store, org: str) -> None:
    for limit in (0, -1, 10**6):
        with pytest.raises(InvalidInput):
            await store.list(org, limit=limit)


# --- versions -------------------------------------------------------------------------------


async def test_list_versions_pages_newest_first(store: Store, org: str) -> None:
    created = await create(store, org)
    diagram_id = created.summary.id
    for version in range(1, 4):
        await store.save(
            org,
            diagram_id,
            expected_version=version,
            author=f"u{version}",
            content=content(bpmn(130, marker=f"v{version + 1}")),
            message=f"m{version + 1}",
        )

    first = await store.list_versions(org, diagram_id, limit=3)
    rest = await store.list_versions(org, diagram_id, limit=3, cursor=first.next_cursor)

    assert [v.rev for v in first.items] == [4, 3, 2]
    assert first.next_cursor is not None
    assert [v.rev for v in rest.items] == [1]
    assert rest.next_cursor is None
    assert [v.message for v in first.items + rest.items] == ["m4", "m3", "m2", "first"]
    assert all(v.diagram_id == diagram_id for v in first.items)
    assert first.items[0].xml.inline == bpmn(130, marker="v4")
    assert rest.items[0].xml == created.xml
    for v in first.items + rest.items:
        assert_utc(v.created_at)


async def test_list_versions_refuses_a_foreign_cursor(store: Store, org: str) -> None:
    created = await create(store, org)
    diagram_cursor = encode_diagram_cursor(created.summary.updated_at, created.summary.id)

    for cursor in ("garbage", diagram_cursor, encode_version_cursor(1)[:-2]):
        with pytest.raises(InvalidCursor):
            await store.list_versions(org, created.summary.id, limit=10, cursor=cursor)


async def test_get_version_of_a_missing_rev_is_version_not_found(store: Store, org: str) -> None:
    created = await create(store, org)

    for rev in (2, 0, -1, 2**40):
        with pytest.raises(VersionNotFound):
            await store.get_version(org, created.summary.id, rev)
    with pytest.raises(DiagramNotFound):
        await store.get_version(org, str(uuid.uuid4()), 1)


# --- principals, migrations, health ---------------------------------------------------------


async def test_ensure_principal_is_idempotent_and_safe_concurrently(
    store: Store, store_backend: StoreBackend, org: str
) -> None:
    alice = Principal(user_id="alice", org_id=org)
    bob = Principal(user_id="bob", org_id=org, name="Bob")

    await asyncio.gather(*(store.ensure_principal(p) for p in [alice, bob] * 10))
    await store.ensure_principal(alice)

    assert await store_backend.organization_count(org) == 1
    assert await store_backend.users(org) == [("alice", None), ("bob", "Bob")]

    # A name the token now carries is recorded; a token without one keeps it.
    await store.ensure_principal(Principal(user_id="alice", org_id=org, name="Alice"))
    await store.ensure_principal(alice)
    assert await store_backend.users(org) == [("alice", "Alice"), ("bob", "Bob")]


async def test_migrate_is_idempotent(store: Store, store_backend: StoreBackend, org: str) -> None:
    applied = await store_backend.applied_migrations()
    await store.migrate()
    await store.migrate()

    # Every migration file of the dialect, numbered from 1 without a gap.
    assert applied == list(range(1, len(applied) + 1))
    dialect = "sqlite" if store_backend.name == "sqlite" else "postgres"
    assert len(applied) == len(load_migrations(dialect))
    assert await store_backend.applied_migrations() == applied
    await create(store, org)


async def test_two_stores_migrating_a_new_database_at_once(
    store_backend: StoreBackend, blob_folder: FolderBlobStore, org: str
) -> None:
    fresh = await store_backend.fresh()
    async with fresh.store(blobs=blob_folder) as one, fresh.store(blobs=blob_folder) as two:
        await asyncio.gather(one.migrate(), two.migrate(), one.migrate())
        created = await create(one, org)
        assert await two.get(org, created.summary.id) == created
    dialect = "sqlite" if store_backend.name == "sqlite" else "postgres"
    expected = [migration.version for migration in load_migrations(dialect)]
    assert await fresh.applied_migrations() == expected


async def test_ping_answers_when_the_database_is_there(store: Store) -> None:
    await store.ping()


async def test_an_unreachable_database_is_store_unavailable(
    store_backend: StoreBackend, blob_folder: FolderBlobStore
) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        async with store_backend.unreachable_store(blobs=blob_folder) as store:
            await store.ping()
    # The driver's exception stays behind the adapter, as the cause.
    assert isinstance(caught.value, CollabError)


async def test_a_closed_store_is_unavailable(
    store_backend: StoreBackend, blob_folder: FolderBlobStore, org: str
) -> None:
    async with store_backend.store(blobs=blob_folder) as store:
        await store.migrate()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.get(org, str(uuid.uuid4()))


# --- Postgres only: row-level security ------------------------------------------------------


@pytest.fixture
async def pg_store(
    postgres_dsn: str, blob_folder: FolderBlobStore
) -> AsyncIterator[PostgresDiagramStore]:
    async with PostgresDiagramStore(
        postgres_dsn, blobs=blob_folder, inline_max_bytes=INLINE_MAX_BYTES
    ) as store:
        await store.migrate()
        yield store


@pytest.fixture
async def pg_conn(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def _as_app_role(conn: asyncpg.Connection, org_id: str) -> None:
    await conn.execute("SET LOCAL ROLE bpmn_collab_app")
    await conn.execute("SELECT set_config('app.org_id', $1, true)", org_id)


async def _insert_diagram_as_app_role(conn: asyncpg.Connection, *, scope: str, owner: str) -> None:
    async with conn.transaction():
        await _as_app_role(conn, scope)
        await conn.execute(
            """
            INSERT INTO diagrams (id, org_id, title, xml_inline, xml_size, element_count,
                                  version, created_by)
            VALUES ($1::uuid, $2, 'forged', 'x'::bytea, 1, 0, 1, 'mallory')
            """,
            str(uuid.uuid4()),
            owner,
        )


@pytest.mark.postgres
async def test_postgres_store_runs_as_the_restricted_role(pg_store: PostgresDiagramStore) -> None:
    assert pg_store.uses_app_role


@pytest.mark.postgres
async def test_postgres_row_level_security_hides_and_protects_other_orgs(
    pg_store: PostgresDiagramStore, pg_conn: asyncpg.Connection, org: str, other_org: str
) -> None:
    created = await create(pg_store, org)
    diagram_id = created.summary.id
    count = "SELECT count(*) FROM {table} WHERE {column} = $1::uuid"

    async with pg_conn.transaction():
        await _as_app_role(pg_conn, other_org)
        assert await pg_conn.fetchval(count.format(table="diagrams", column="id"), diagram_id) == 0
        assert (
            await pg_conn.fetchval(
                count.format(table="diagram_versions", column="diagram_id"), diagram_id
            )
            == 0
        )
        # Not even an unfiltered query sees org A's rows.
        assert await pg_conn.fetchval("SELECT count(*) FROM diagrams WHERE org_id = $1", org) == 0
        updated = await pg_conn.execute(
            "UPDATE diagrams SET title = 'stolen' WHERE id = $1::uuid", diagram_id
        )
        assert updated == "UPDATE 0"

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await _insert_diagram_as_app_role(pg_conn, scope=other_org, owner=org)

    # The same role scoped to org A does see its rows: the zero above is the policy.
    async with pg_conn.transaction():
        await _as_app_role(pg_conn, org)
        assert await pg_conn.fetchval(count.format(table="diagrams", column="id"), diagram_id) == 1
    assert (await pg_store.get(org, diagram_id)).summary.title == "Order handling"


@pytest.mark.postgres
async def test_postgres_store_statements_run_as_the_restricted_role(
    fresh_postgres_dsn: Callable[[], Awaitable[str]], blob_folder: FolderBlobStore, org: str
) -> None:
    dsn = await fresh_postgres_dsn()
    async with PostgresDiagramStore(
        dsn, blobs=blob_folder, inline_max_bytes=INLINE_MAX_BYTES
    ) as store:
        await store.migrate()
        created = await create(store, org)
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute("REVOKE SELECT ON diagrams FROM bpmn_collab_app")
        finally:
            await admin.close()

        # Only the role lost the privilege: if the store still reads, it is not using it.
        with pytest.raises(CollabError, match="permission denied") as caught:
            await store.get(org, created.summary.id)
        assert isinstance(caught.value.__cause__, asyncpg.InsufficientPrivilegeError)


@pytest.mark.postgres
async def test_postgres_store_is_unavailable_once_its_database_is_gone(
    fresh_postgres_dsn: Callable[[], Awaitable[str]], blob_folder: FolderBlobStore, org: str
) -> None:
    dsn = await fresh_postgres_dsn()
    async with PostgresDiagramStore(
        dsn, blobs=blob_folder, inline_max_bytes=INLINE_MAX_BYTES
    ) as store:
        await store.migrate()
        await store.ping()
        admin = await asyncpg.connect(admin_dsn())
        try:
            await admin.execute(f'DROP DATABASE "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()

        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.get(org, str(uuid.uuid4()))


@pytest.mark.postgres
async def test_postgres_store_works_without_the_role(
    postgres_dsn: str, blob_folder: FolderBlobStore, org: str
) -> None:
    async with PostgresDiagramStore(
        postgres_dsn, blobs=blob_folder, inline_max_bytes=INLINE_MAX_BYTES, app_role=None
    ) as store:
        assert not store.uses_app_role
        created = await create(store, org)
        assert await store.get(org, created.summary.id) == created


# --- test doubles ---------------------------------------------------------------------------


class DelegatingBlobs:
    """A blob store passing every call to a real folder, for doubles to override."""

    def __init__(self, inner: FolderBlobStore) -> None:
        self._inner = inner

    async def ensure_ready(self) -> None:
        await self._inner.ensure_ready()

    async def put(self, key: str, data: bytes, *, content_type: str = "application/xml") -> None:
        await self._inner.put(key, data, content_type=content_type)

    async def get(self, key: str) -> bytes:
        return await self._inner.get(key)

    async def open(self, key: str, *, chunk_bytes: int = 65536) -> AsyncIterator[bytes]:
        return await self._inner.open(key, chunk_bytes=chunk_bytes)

    async def delete(self, key: str) -> None:
        await self._inner.delete(key)

    async def exists(self, key: str) -> bool:
        return await self._inner.exists(key)


class FailingBlobs(DelegatingBlobs):
    """A blob store whose writes fail."""

    async def put(self, key: str, data: bytes, *, content_type: str = "application/xml") -> None:
        raise BlobStoreUnavailable(f"cannot write {key!r}: the test says so")


class RecordingBlobs(DelegatingBlobs):
    """A working blob store that remembers every key written."""

    def __init__(self, inner: FolderBlobStore) -> None:
        super().__init__(inner)
        self.puts: list[str] = []

    async def put(self, key: str, data: bytes, *, content_type: str = "application/xml") -> None:
        self.puts.append(key)
        await self._inner.put(key, data, content_type=content_type)
