"""``DiagramStore`` on one SQLite file: the embedded default.

One connection and one lock for whole transactions (``persistence/sqlite_connection.py``:
writes take SQLite's write lock up front with ``BEGIN IMMEDIATE``, reads get a consistent
snapshot); ``synchronous`` stays FULL, so an acknowledged save survives a power cut.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import aiosqlite

from core.errors import (
    DiagramExists,
    DiagramNotFound,
    VersionConflict,
    VersionNotFound,
)
from persistence.content import plan_xml, write_planned
from persistence.cursor import (
    decode_diagram_cursor,
    decode_version_cursor,
    encode_diagram_cursor,
    encode_version_cursor,
)
from persistence.migrator import migrate_sqlite
from persistence.models import (
    DiagramRecord,
    DiagramSummary,
    NewContent,
    Page,
    Principal,
    VersionRecord,
)
from persistence.ports import BlobStore
from persistence.rows import (
    EPOCH_AFTER_NEW_XML,
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_SAVED,
    check_limit,
    diagram_from_row,
    dump_json,
    event_payload,
    existing_id,
    int4,
    iso_utc,
    new_diagram_id,
    optional_bytes,
    page_of,
    search_words,
    summary_from_row,
    title_matches,
    version_from_row,
)
from persistence.sqlite_connection import SqliteConnection

log = logging.getLogger(__name__)

_SUMMARY_COLUMNS = (
    "id, org_id, project_id, title, version, element_count, thumbnail_url, created_by, "
    "created_at, updated_at"
)
_DIAGRAM_COLUMNS = (
    f"{_SUMMARY_COLUMNS}, xml_inline, xml_blob_key, xml_size, crdt_state, crdt_epoch, metadata, "
    "log_position"
)
_VERSION_COLUMNS = (
    "diagram_id, rev, author, message, created_at, element_count, xml_inline, xml_blob_key, "
    "xml_size, crdt_state, metadata, log_position"
)

# A version row is a copy of the diagram row as the same transaction just wrote it.
_INSERT_VERSION = """
INSERT INTO diagram_versions (diagram_id, org_id, rev, xml_inline, xml_blob_key, xml_size,
                              crdt_state, metadata, element_count, author, message, created_at,
                              log_position)
SELECT id, org_id, version, xml_inline, xml_blob_key, xml_size,
       crdt_state, metadata, element_count, ?, ?, updated_at, log_position
FROM diagrams WHERE id = ?
"""
_INSERT_EVENT = """
INSERT INTO outbox_events (org_id, diagram_id, type, payload, created_at) VALUES (?, ?, ?, ?, ?)
"""
_LIVE_DIAGRAM = "SELECT version FROM diagrams WHERE id = ? AND org_id = ? AND deleted_at IS NULL"

_TITLE_MATCH_FUNCTION = "bpmn_title_matches"


class SqliteDiagramStore:
    def __init__(
        self,
        path: Path,
        *,
        blobs: BlobStore,
        inline_max_bytes: int,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self._path = path
        self._blobs = blobs
        self._inline_max_bytes = inline_max_bytes
        self._db = SqliteConnection(path, busy_timeout_ms=busy_timeout_ms, what="store")

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._db.open(_set_up)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._db.close()

    def _transaction(self, *, write: bool) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        return self._db.transaction(write=write)

    # --- DiagramStore -------------------------------------------------------------------------

    async def migrate(self) -> None:
        async with self._db.locked() as conn:
            applied = await migrate_sqlite(conn)
        if applied:
            log.info("applied SQLite migrations %s to %s", applied, self._path)

    async def ping(self) -> None:
        async with self._transaction(write=False) as conn:
            await conn.execute_fetchall("SELECT 1")

    async def ensure_principal(self, principal: Principal) -> None:
        now = _now()
        async with self._transaction(write=True) as conn:
            await conn.execute(
                "INSERT INTO organizations (id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (principal.org_id, now),
            )
            # A name the token now carries replaces the recorded one; no name keeps it.
            await conn.execute(
                """
                INSERT INTO users (org_id, id, name, created_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (org_id, id) DO UPDATE SET name = excluded.name
                WHERE excluded.name IS NOT NULL AND users.name IS NOT excluded.name
                """,
                (principal.org_id, principal.user_id, principal.name, now),
            )

    async def create(
        self,
        org_id: str,
        *,
        diagram_id: str,
        title: str,
        project_id: str | None,
        content: NewContent,
        author: str,
        message: str | None = None,
    ) -> DiagramRecord:
        diagram_id = new_diagram_id(diagram_id)
        planned = plan_xml(diagram_id, 1, content.xml, inline_max_bytes=self._inline_max_bytes)
        now = _now()
        async with self._transaction(write=True) as conn:
            rows = await conn.execute_fetchall(
                f"""
                INSERT INTO diagrams (id, org_id, project_id, title, xml_inline, xml_blob_key,
                    xml_size, crdt_state, metadata, element_count, version, created_by,
                    created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
                ON CONFLICT (id) DO NOTHING
                RETURNING {_DIAGRAM_COLUMNS}
                """,  # noqa: S608 - column list is a constant
                (
                    diagram_id,
                    org_id,
                    project_id,
                    title,
                    planned.inline,
                    planned.blob_key,
                    planned.size,
                    content.crdt_state,
                    dump_json(content.metadata),
                    content.element_count,
                    author,
                    now,
                    now,
                ),
            )
            row = _first(rows)
            if row is None:
                raise DiagramExists(diagram_id)
            # The id is ours now; only the winner of the insert writes the blob.
            await write_planned(self._blobs, planned, content.xml)
            await conn.execute(_INSERT_VERSION, (author, message, diagram_id))
            await conn.execute(
                _INSERT_EVENT,
                (
                    org_id,
                    diagram_id,
                    EVENT_CREATED,
                    event_payload(diagram_id, version=1, author=author),
                    now,
                ),
            )
        return diagram_from_row(row)

    async def get(self, org_id: str, diagram_id: str) -> DiagramRecord:
        canonical = existing_id(diagram_id)
        async with self._transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                f"SELECT {_DIAGRAM_COLUMNS} FROM diagrams "  # noqa: S608 - constant columns
                "WHERE id = ? AND org_id = ? AND deleted_at IS NULL",
                (canonical, org_id),
            )
        row = _first(rows)
        if row is None:
            raise DiagramNotFound(diagram_id)
        return diagram_from_row(row)

    async def list(
        self,
        org_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        query: str | None = None,
        project_id: str | None = None,
    ) -> Page[DiagramSummary]:
        check_limit(limit)
        clauses = ["org_id = ?", "deleted_at IS NULL"]
        args: list[Any] = [org_id]
        if project_id is not None:
            clauses.append("project_id = ?")
            args.append(project_id)
        words = search_words(query)
        if words:
            clauses.append(f"{_TITLE_MATCH_FUNCTION}(title, ?)")
            args.append(" ".join(words))
        if cursor is not None:
            after_time, after_id = decode_diagram_cursor(cursor)
            clauses.append("(updated_at, id) < (?, ?)")
            args += [iso_utc(after_time), after_id]
        args.append(limit + 1)
        # Only constant fragments are joined; every value is a bound parameter.
        sql = (
            f"SELECT {_SUMMARY_COLUMNS} FROM diagrams WHERE {' AND '.join(clauses)} "  # noqa: S608
            "ORDER BY updated_at DESC, id DESC LIMIT ?"
        )
        async with self._transaction(write=False) as conn:
            rows = await conn.execute_fetchall(sql, args)
        return page_of(
            list(rows),
            limit,
            summary_from_row,
            lambda last: encode_diagram_cursor(last.updated_at, last.id),
        )

    async def save(
        self,
        org_id: str,
        diagram_id: str,
        *,
        expected_version: int,
        author: str,
        title: str | None = None,
        content: NewContent | None = None,
        message: str | None = None,
    ) -> DiagramRecord:
        canonical = existing_id(diagram_id)
        now = _now()
        guard = (canonical, org_id, int4(expected_version))
        async with self._transaction(write=True) as conn:
            if content is None:
                planned = None
                rows = await conn.execute_fetchall(
                    f"""
                    UPDATE diagrams SET version = version + 1, title = COALESCE(?, title),
                        updated_at = ?
                    WHERE id = ? AND org_id = ? AND version = ? AND deleted_at IS NULL
                    RETURNING {_DIAGRAM_COLUMNS}
                    """,  # noqa: S608 - column list is a constant
                    (title, now, *guard),
                )
            else:
                planned = plan_xml(
                    canonical,
                    expected_version + 1,
                    content.xml,
                    inline_max_bytes=self._inline_max_bytes,
                )
                rows = await conn.execute_fetchall(
                    f"""
                    UPDATE diagrams SET version = version + 1, title = COALESCE(?, title),
                        updated_at = ?, xml_inline = ?, xml_blob_key = ?, xml_size = ?,
                        crdt_state = ?, metadata = ?, element_count = ?, log_position = ?,
                        crdt_epoch = {EPOCH_AFTER_NEW_XML.format(new_state="?")}
                    WHERE id = ? AND org_id = ? AND version = ? AND deleted_at IS NULL
                    RETURNING {_DIAGRAM_COLUMNS}
                    """,  # noqa: S608 - column list is a constant
                    (
                        title,
                        now,
                        planned.inline,
                        planned.blob_key,
                        planned.size,
                        content.crdt_state,
                        dump_json(content.metadata),
                        content.element_count,
                        content.log_position,
                        content.crdt_state,
                        *guard,
                    ),
                )
            row = _first(rows)
            if row is None:
                live = _first(await conn.execute_fetchall(_LIVE_DIAGRAM, (canonical, org_id)))
                if live is None:
                    raise DiagramNotFound(diagram_id)
                raise VersionConflict(
                    current_version=live["version"], expected_version=expected_version
                )
            # Only the winner of the conditional update gets here; a failing blob
            # write rolls the whole save back.
            if planned is not None and content is not None:
                await write_planned(self._blobs, planned, content.xml)
            version = row["version"]
            await conn.execute(_INSERT_VERSION, (author, message, canonical))
            await conn.execute(
                _INSERT_EVENT,
                (
                    org_id,
                    canonical,
                    EVENT_SAVED,
                    event_payload(canonical, version=version, author=author),
                    now,
                ),
            )
        return diagram_from_row(row)

    async def save_crdt_state(
        self, org_id: str, diagram_id: str, *, version: int, crdt_state: bytes
    ) -> bytes:
        canonical = existing_id(diagram_id)
        async with self._transaction(write=True) as conn:
            # BEGIN IMMEDIATE holds the write lock: nothing changes the row
            # between this read and the update below.
            live = _first(
                await conn.execute_fetchall(
                    "SELECT version, crdt_state FROM diagrams "
                    "WHERE id = ? AND org_id = ? AND deleted_at IS NULL",
                    (canonical, org_id),
                )
            )
            if live is None:
                raise DiagramNotFound(diagram_id)
            if live["version"] != version:
                raise VersionConflict(current_version=live["version"], expected_version=version)
            stored = optional_bytes(live["crdt_state"])
            if stored is not None:
                return stored
            await conn.execute(
                "UPDATE diagrams SET crdt_state = ? WHERE id = ? AND org_id = ?",
                (crdt_state, canonical, org_id),
            )
            await conn.execute(
                "UPDATE diagram_versions SET crdt_state = ? "
                "WHERE diagram_id = ? AND org_id = ? AND rev = ?",
                (crdt_state, canonical, org_id, version),
            )
        return crdt_state

    async def bump_epoch(self, org_id: str, diagram_id: str) -> int:
        canonical = existing_id(diagram_id)
        async with self._transaction(write=True) as conn:
            rows = await conn.execute_fetchall(
                """
                UPDATE diagrams
                SET crdt_epoch = crdt_epoch + 1, crdt_state = NULL, log_position = NULL
                WHERE id = ? AND org_id = ? AND deleted_at IS NULL
                RETURNING crdt_epoch
                """,
                (canonical, org_id),
            )
        row = _first(rows)
        if row is None:
            raise DiagramNotFound(diagram_id)
        return int(row["crdt_epoch"])

    async def delete(self, org_id: str, diagram_id: str) -> None:
        canonical = existing_id(diagram_id)
        now = _now()
        async with self._transaction(write=True) as conn:
            rows = await conn.execute_fetchall(
                """
                UPDATE diagrams SET deleted_at = ?
                WHERE id = ? AND org_id = ? AND deleted_at IS NULL
                RETURNING version
                """,
                (now, canonical, org_id),
            )
            row = _first(rows)
            if row is None:
                raise DiagramNotFound(diagram_id)
            await conn.execute(
                _INSERT_EVENT,
                (
                    org_id,
                    canonical,
                    EVENT_DELETED,
                    event_payload(canonical, version=row["version"]),
                    now,
                ),
            )

    async def list_versions(
        self, org_id: str, diagram_id: str, *, limit: int, cursor: str | None = None
    ) -> Page[VersionRecord]:
        check_limit(limit)
        canonical = existing_id(diagram_id)
        before_rev = decode_version_cursor(cursor) if cursor is not None else None
        async with self._transaction(write=False) as conn:
            if not await conn.execute_fetchall(_LIVE_DIAGRAM, (canonical, org_id)):
                raise DiagramNotFound(diagram_id)
            rows = await conn.execute_fetchall(
                f"""
                SELECT {_VERSION_COLUMNS} FROM diagram_versions
                WHERE diagram_id = ? AND org_id = ? AND (? IS NULL OR rev < ?)
                ORDER BY rev DESC LIMIT ?
                """,  # noqa: S608 - column list is a constant
                (canonical, org_id, before_rev, before_rev, limit + 1),
            )
        return page_of(
            list(rows), limit, version_from_row, lambda last: encode_version_cursor(last.rev)
        )

    async def get_version(self, org_id: str, diagram_id: str, rev: int) -> VersionRecord:
        canonical = existing_id(diagram_id)
        async with self._transaction(write=False) as conn:
            if not await conn.execute_fetchall(_LIVE_DIAGRAM, (canonical, org_id)):
                raise DiagramNotFound(diagram_id)
            rows = await conn.execute_fetchall(
                f"SELECT {_VERSION_COLUMNS} FROM diagram_versions "  # noqa: S608 - constant
                "WHERE diagram_id = ? AND org_id = ? AND rev = ?",
                (canonical, org_id, int4(rev)),
            )
        row = _first(rows)
        if row is None:
            raise VersionNotFound(diagram_id, rev)
        return version_from_row(row)


# --- helpers ------------------------------------------------------------------------------------


def _now() -> str:
    return iso_utc(datetime.now(UTC))


async def _set_up(conn: aiosqlite.Connection) -> None:
    await conn.execute("PRAGMA foreign_keys = ON")
    # synchronous stays FULL (the default): a commit the API acknowledged must survive a
    # power cut, not just stay uncorrupted.
    await conn.create_function(_TITLE_MATCH_FUNCTION, 2, _title_matches_sql, deterministic=True)


def _first(rows: Iterable[sqlite3.Row]) -> sqlite3.Row | None:
    return next(iter(rows), None)


def _title_matches_sql(title: str, words: str) -> bool:
    return title_matches(title, words.split(" "))
