"""``DiagramStore`` on PostgreSQL through an asyncpg pool: the distributed setup.

Every transaction names its organization (``app.org_id``) and, when the
restricted ``bpmn_collab_app`` role is usable, switches to it, so the
row-level security policies of the schema hold even for a superuser connection:
a query that forgot its org filter still sees one org only.
"""

from __future__ import annotations

import logging
from typing import Any, Self

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
from persistence.migrator import migrate_postgres
from persistence.models import (
    DiagramRecord,
    DiagramSummary,
    NewContent,
    Page,
    Principal,
    VersionRecord,
)
from persistence.pg_pool import PgPool
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
    new_diagram_id,
    optional_bytes,
    page_of,
    search_words,
    summary_from_row,
    version_from_row,
)

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
       crdt_state, metadata, element_count, $2, $3, updated_at, log_position
FROM diagrams WHERE id = $1::uuid
"""
_INSERT_EVENT = """
INSERT INTO outbox_events (org_id, diagram_id, type, payload) VALUES ($1, $2::uuid, $3, $4::jsonb)
"""
_LIVE_DIAGRAM = (
    "SELECT version FROM diagrams WHERE id = $1::uuid AND org_id = $2 AND deleted_at IS NULL"
)


class PostgresDiagramStore:
    def __init__(
        self,
        dsn: str,
        *,
        blobs: BlobStore,
        inline_max_bytes: int,
        pool_min: int = 1,
        pool_max: int = 10,
        app_role: str | None = "bpmn_collab_app",
    ) -> None:
        self._blobs = blobs
        self._inline_max_bytes = inline_max_bytes
        self._db = PgPool(
            dsn, pool_min=pool_min, pool_max=pool_max, app_role=app_role, what="store"
        )

    @property
    def uses_app_role(self) -> bool:
        """Whether transactions run as the restricted role (RLS enforced even for superusers)."""
        return self._db.role_active

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._db.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._db.close()

    # --- DiagramStore -------------------------------------------------------------------------

    async def migrate(self) -> None:
        async with self._db.connection() as conn:
            applied = await migrate_postgres(conn)
        if applied:
            log.info("applied Postgres migrations %s", applied)
        await self._db.detect_role()

    async def ping(self) -> None:
        async with self._db.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def ensure_principal(self, principal: Principal) -> None:
        async with self._db.transaction(principal.org_id) as conn:
            await conn.execute(
                "INSERT INTO organizations (id) VALUES ($1) ON CONFLICT DO NOTHING",
                principal.org_id,
            )
            # A name the token now carries replaces the recorded one; no name keeps it.
            await conn.execute(
                """
                INSERT INTO users (org_id, id, name) VALUES ($1, $2, $3)
                ON CONFLICT (org_id, id) DO UPDATE SET name = excluded.name
                WHERE excluded.name IS NOT NULL AND users.name IS DISTINCT FROM excluded.name
                """,
                principal.org_id,
                principal.user_id,
                principal.name,
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
        async with self._db.transaction(org_id) as conn:
            row = await conn.fetchrow(
                f"""
                INSERT INTO diagrams (id, org_id, project_id, title, xml_inline, xml_blob_key,
                    xml_size, crdt_state, metadata, element_count, version, created_by)
                VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, 1, $11)
                ON CONFLICT (id) DO NOTHING
                RETURNING {_DIAGRAM_COLUMNS}
                """,  # noqa: S608 - column list is a constant
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
            )
            if row is None:
                raise DiagramExists(diagram_id)
            # The id is ours now; only the winner of the insert writes the blob.
            await write_planned(self._blobs, planned, content.xml)
            await conn.execute(_INSERT_VERSION, diagram_id, author, message)
            await conn.execute(
                _INSERT_EVENT,
                org_id,
                diagram_id,
                EVENT_CREATED,
                event_payload(diagram_id, version=1, author=author),
            )
        return diagram_from_row(row)

    async def get(self, org_id: str, diagram_id: str) -> DiagramRecord:
        canonical = existing_id(diagram_id)
        async with self._db.transaction(org_id) as conn:
            row = await conn.fetchrow(
                f"SELECT {_DIAGRAM_COLUMNS} FROM diagrams "  # noqa: S608 - constant columns
                "WHERE id = $1::uuid AND org_id = $2 AND deleted_at IS NULL",
                canonical,
                org_id,
            )
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
        args: list[Any] = [org_id]

        def param(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        clauses = ["org_id = $1", "deleted_at IS NULL"]
        if project_id is not None:
            clauses.append(f"project_id = {param(project_id)}")
        words = search_words(query)
        if words:
            # Each word is letters/digits only (search_words), so the tsquery
            # text cannot carry an operator the user typed.
            tsquery = " & ".join(f"{word}:*" for word in words)
            clauses.append(
                f"to_tsvector('simple', title) @@ to_tsquery('simple', {param(tsquery)})"
            )
        if cursor is not None:
            after_time, after_id = decode_diagram_cursor(cursor)
            clauses.append(
                f"(updated_at, id) < ({param(after_time)}::timestamptz, {param(after_id)}::uuid)"
            )
        # Only constant fragments are joined; every value is a bound parameter.
        sql = (
            f"SELECT {_SUMMARY_COLUMNS} FROM diagrams WHERE {' AND '.join(clauses)} "  # noqa: S608
            f"ORDER BY updated_at DESC, id DESC LIMIT {param(limit + 1)}"
        )
        async with self._db.transaction(org_id) as conn:
            rows = await conn.fetch(sql, *args)
        return page_of(
            rows,
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
        guard = (canonical, org_id, int4(expected_version))
        async with self._db.transaction(org_id) as conn:
            # clock_timestamp(), not now(): evaluated once the row lock is ours,
            # so a save always moves updated_at past the save it waited for.
            if content is None:
                planned = None
                row = await conn.fetchrow(
                    f"""
                    UPDATE diagrams SET version = version + 1, title = COALESCE($4, title),
                        updated_at = clock_timestamp()
                    WHERE id = $1::uuid AND org_id = $2 AND version = $3 AND deleted_at IS NULL
                    RETURNING {_DIAGRAM_COLUMNS}
                    """,  # noqa: S608 - column list is a constant
                    *guard,
                    title,
                )
            else:
                planned = plan_xml(
                    canonical,
                    expected_version + 1,
                    content.xml,
                    inline_max_bytes=self._inline_max_bytes,
                )
                row = await conn.fetchrow(
                    f"""
                    UPDATE diagrams SET version = version + 1, title = COALESCE($4, title),
                        updated_at = clock_timestamp(), xml_inline = $5, xml_blob_key = $6,
                        xml_size = $7, crdt_state = $8, metadata = $9::jsonb, element_count = $10,
                        log_position = $11,
                        crdt_epoch = {EPOCH_AFTER_NEW_XML.format(new_state="$8::bytea")}
                    WHERE id = $1::uuid AND org_id = $2 AND version = $3 AND deleted_at IS NULL
                    RETURNING {_DIAGRAM_COLUMNS}
                    """,  # noqa: S608 - column list is a constant
                    *guard,
                    title,
                    planned.inline,
                    planned.blob_key,
                    planned.size,
                    content.crdt_state,
                    dump_json(content.metadata),
                    content.element_count,
                    content.log_position,
                )
            if row is None:
                # A fresh statement, so a fresh snapshot: it sees the winner's commit.
                current = await conn.fetchval(_LIVE_DIAGRAM, canonical, org_id)
                if current is None:
                    raise DiagramNotFound(diagram_id)
                raise VersionConflict(current_version=current, expected_version=expected_version)
            # Only the winner of the conditional update gets here (it holds the
            # row lock until commit); a failing blob write rolls the save back.
            if planned is not None and content is not None:
                await write_planned(self._blobs, planned, content.xml)
            await conn.execute(_INSERT_VERSION, canonical, author, message)
            await conn.execute(
                _INSERT_EVENT,
                org_id,
                canonical,
                EVENT_SAVED,
                event_payload(canonical, version=row["version"], author=author),
            )
        return diagram_from_row(row)

    async def save_crdt_state(
        self, org_id: str, diagram_id: str, *, version: int, crdt_state: bytes
    ) -> bytes:
        canonical = existing_id(diagram_id)
        async with self._db.transaction(org_id) as conn:
            # FOR UPDATE: a caller that waited for the row lock reads the row as
            # the first one committed it, and nothing changes it before our update.
            live = await conn.fetchrow(
                "SELECT version, crdt_state FROM diagrams "
                "WHERE id = $1::uuid AND org_id = $2 AND deleted_at IS NULL FOR UPDATE",
                canonical,
                org_id,
            )
            if live is None:
                raise DiagramNotFound(diagram_id)
            if live["version"] != version:
                raise VersionConflict(current_version=live["version"], expected_version=version)
            stored = optional_bytes(live["crdt_state"])
            if stored is not None:
                return stored
            await conn.execute(
                "UPDATE diagrams SET crdt_state = $3 WHERE id = $1::uuid AND org_id = $2",
                canonical,
                org_id,
                crdt_state,
            )
            await conn.execute(
                "UPDATE diagram_versions SET crdt_state = $4 "
                "WHERE diagram_id = $1::uuid AND org_id = $2 AND rev = $3",
                canonical,
                org_id,
                version,
                crdt_state,
            )
        return crdt_state

    async def bump_epoch(self, org_id: str, diagram_id: str) -> int:
        canonical = existing_id(diagram_id)
        async with self._db.transaction(org_id) as conn:
            epoch = await conn.fetchval(
                """
                UPDATE diagrams
                SET crdt_epoch = crdt_epoch + 1, crdt_state = NULL, log_position = NULL
                WHERE id = $1::uuid AND org_id = $2 AND deleted_at IS NULL
                RETURNING crdt_epoch
                """,
                canonical,
                org_id,
            )
        if epoch is None:
            raise DiagramNotFound(diagram_id)
        return int(epoch)

    async def delete(self, org_id: str, diagram_id: str) -> None:
        canonical = existing_id(diagram_id)
        async with self._db.transaction(org_id) as conn:
            version = await conn.fetchval(
                """
                UPDATE diagrams SET deleted_at = now()
                WHERE id = $1::uuid AND org_id = $2 AND deleted_at IS NULL
                RETURNING version
                """,
                canonical,
                org_id,
            )
            if version is None:
                raise DiagramNotFound(diagram_id)
            await conn.execute(
                _INSERT_EVENT,
                org_id,
                canonical,
                EVENT_DELETED,
                event_payload(canonical, version=version),
            )

    async def list_versions(
        self, org_id: str, diagram_id: str, *, limit: int, cursor: str | None = None
    ) -> Page[VersionRecord]:
        check_limit(limit)
        canonical = existing_id(diagram_id)
        before_rev = decode_version_cursor(cursor) if cursor is not None else None
        async with self._db.transaction(org_id) as conn:
            if await conn.fetchval(_LIVE_DIAGRAM, canonical, org_id) is None:
                raise DiagramNotFound(diagram_id)
            rows = await conn.fetch(
                f"""
                SELECT {_VERSION_COLUMNS} FROM diagram_versions
                WHERE diagram_id = $1::uuid AND org_id = $2 AND ($3::integer IS NULL OR rev < $3)
                ORDER BY rev DESC LIMIT $4
                """,  # noqa: S608 - column list is a constant
                canonical,
                org_id,
                before_rev,
                limit + 1,
            )
        return page_of(rows, limit, version_from_row, lambda last: encode_version_cursor(last.rev))

    async def get_version(self, org_id: str, diagram_id: str, rev: int) -> VersionRecord:
        canonical = existing_id(diagram_id)
        async with self._db.transaction(org_id) as conn:
            if await conn.fetchval(_LIVE_DIAGRAM, canonical, org_id) is None:
                raise DiagramNotFound(diagram_id)
            row = await conn.fetchrow(
                f"SELECT {_VERSION_COLUMNS} FROM diagram_versions "  # noqa: S608 - constant
                "WHERE diagram_id = $1::uuid AND org_id = $2 AND rev = $3",
                canonical,
                org_id,
                int4(rev),
            )
        if row is None:
            raise VersionNotFound(diagram_id, rev)
        return version_from_row(row)


# --- helpers ------------------------------------------------------------------------------------
