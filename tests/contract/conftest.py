"""Fixtures for the ``DiagramStore`` contract: every adapter behind one small interface.

A backend builds stores on its database and answers a few questions straight
from the tables (version rows, outbox events, ...), with a connection of its
own, so the tests can check what the store's API does not expose.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg
import orjson
import pytest

from persistence.folder_blobs import FolderBlobStore
from persistence.ports import BlobStore
from persistence.postgres_store import PostgresDiagramStore
from persistence.sqlite_store import SqliteDiagramStore
from tests.fixtures.services import free_port

# Small, so a test reaches the blob path with a few hundred bytes of XML.
INLINE_MAX_BYTES = 256

Store = SqliteDiagramStore | PostgresDiagramStore


class StoreBackend(Protocol):
    name: str

    def store(self, *, blobs: BlobStore, inline_max_bytes: int = INLINE_MAX_BYTES) -> Store:
        """A store on this backend's database (not yet entered)."""

    def unreachable_store(self, *, blobs: BlobStore) -> Store:
        """A store whose database cannot be reached (entering or pinging it fails)."""

    async def fresh(self) -> StoreBackend:
        """The same kind of backend on a brand-new, empty database."""

    async def version_revs(self, diagram_id: str) -> list[int]: ...

    async def events(self, diagram_id: str) -> list[tuple[str, dict[str, Any]]]: ...

    async def organization_count(self, org_id: str) -> int: ...

    async def users(self, org_id: str) -> list[tuple[str, str | None]]: ...

    async def applied_migrations(self) -> list[int]: ...


class SqliteBackend:
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self.path = folder / "db" / "bpmn-collab.db"

    def store(self, *, blobs: BlobStore, inline_max_bytes: int = INLINE_MAX_BYTES) -> Store:
        return SqliteDiagramStore(self.path, blobs=blobs, inline_max_bytes=inline_max_bytes)

    def unreachable_store(self, *, blobs: BlobStore) -> Store:
        # The database's folder would have to live inside a regular file.
        blocker = self._folder / "not-a-folder"
        blocker.write_bytes(b"")
        return SqliteDiagramStore(
            blocker / "db" / "x.db", blobs=blobs, inline_max_bytes=INLINE_MAX_BYTES
        )

    async def fresh(self) -> SqliteBackend:
        return SqliteBackend(self._folder / f"fresh-{uuid.uuid4().hex[:8]}")

    async def _fetch(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        async with aiosqlite.connect(self.path) as conn:
            conn.row_factory = sqlite3.Row
            return list(await conn.execute_fetchall(sql, args))

    async def version_revs(self, diagram_id: str) -> list[int]:
        rows = await self._fetch(
            "SELECT rev FROM diagram_versions WHERE diagram_id = ? ORDER BY rev", diagram_id
        )
        return [row["rev"] for row in rows]

    async def events(self, diagram_id: str) -> list[tuple[str, dict[str, Any]]]:
        rows = await self._fetch(
            "SELECT type, payload FROM outbox_events WHERE diagram_id = ? ORDER BY id", diagram_id
        )
        return [(row["type"], orjson.loads(row["payload"])) for row in rows]

    async def organization_count(self, org_id: str) -> int:
        rows = await self._fetch("SELECT count(*) AS n FROM organizations WHERE id = ?", org_id)
        return int(rows[0]["n"])

    async def users(self, org_id: str) -> list[tuple[str, str | None]]:
        rows = await self._fetch("SELECT id, name FROM users WHERE org_id = ? ORDER BY id", org_id)
        return [(row["id"], row["name"]) for row in rows]

    async def applied_migrations(self) -> list[int]:
        rows = await self._fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [row["version"] for row in rows]


class PostgresBackend:
    name = "postgres"

    def __init__(self, dsn: str, new_database: Callable[[], Awaitable[str]]) -> None:
        self.dsn = dsn
        self._new_database = new_database

    def store(self, *, blobs: BlobStore, inline_max_bytes: int = INLINE_MAX_BYTES) -> Store:
        # pool_max 10: the concurrency tests need real parallel transactions.
        return PostgresDiagramStore(
            self.dsn, blobs=blobs, inline_max_bytes=inline_max_bytes, pool_min=1, pool_max=10
        )

    def unreachable_store(self, *, blobs: BlobStore) -> Store:
        # Nothing listens on a port just found free.
        dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
        return PostgresDiagramStore(dsn, blobs=blobs, inline_max_bytes=INLINE_MAX_BYTES)

    async def fresh(self) -> PostgresBackend:
        return PostgresBackend(await self._new_database(), self._new_database)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        # A superuser connection: row-level security does not hide anything here.
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def version_revs(self, diagram_id: str) -> list[int]:
        rows = await self._fetch(
            "SELECT rev FROM diagram_versions WHERE diagram_id = $1::uuid ORDER BY rev",
            diagram_id,
        )
        return [row["rev"] for row in rows]

    async def events(self, diagram_id: str) -> list[tuple[str, dict[str, Any]]]:
        rows = await self._fetch(
            "SELECT type, payload FROM outbox_events WHERE diagram_id = $1::uuid ORDER BY id",
            diagram_id,
        )
        return [(row["type"], orjson.loads(row["payload"])) for row in rows]

    async def organization_count(self, org_id: str) -> int:
        rows = await self._fetch("SELECT count(*) AS n FROM organizations WHERE id = $1", org_id)
        return int(rows[0]["n"])

    async def users(self, org_id: str) -> list[tuple[str, str | None]]:
        rows = await self._fetch("SELECT id, name FROM users WHERE org_id = $1 ORDER BY id", org_id)
        return [(row["id"], row["name"]) for row in rows]

    async def applied_migrations(self) -> list[int]:
        rows = await self._fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [row["version"] for row in rows]


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    # Synchronous on purpose: an async fixture cannot pull in another async
    # fixture with ``getfixturevalue`` while the event loop is running.
    if request.param == "sqlite":
        return SqliteBackend(tmp_path)
    # The session database is shared; tests keep apart by using fresh org ids.
    return PostgresBackend(
        request.getfixturevalue("postgres_dsn"), request.getfixturevalue("fresh_postgres_dsn")
    )


@pytest.fixture
async def blob_folder(tmp_path: Path) -> AsyncIterator[FolderBlobStore]:
    async with FolderBlobStore(tmp_path / "blobs") as blobs:
        yield blobs


@pytest.fixture
async def store(store_backend: StoreBackend, blob_folder: FolderBlobStore) -> AsyncIterator[Store]:
    async with store_backend.store(blobs=blob_folder) as opened:
        await opened.migrate()
        yield opened


@pytest.fixture
def org() -> str:
    return f"org-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def other_org() -> str:
    return f"org-{uuid.uuid4().hex[:12]}"
