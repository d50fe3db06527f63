"""``DiagramStore`` on PostgreSQL through an asyncpg pool: the distributed setup.

Every transaction names its organization (``app.org_id``) and, when the
restricted ``bpmn_collab_app`` role is usable, switches to it, so the
row-level security policies of the schema hold even for a superuser connection:
a query that forgot its org filter still sees one org only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from core.errors import (
    DiagramExists,
    DiagramNotFound,
    StoreUnavailable,
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
from persistence.driver_errors import pg_errors
from persistence.migrator import migrate_postgres
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
    new_diagram_id,
    optional_bytes,
    page_of,
    search_words,
    summary_from_row,
    version_from_row,
)

log = logging.getLogger(__name__)

# A string: asyncpg's classes are generic only in its stubs.
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

_CONNECT_TIMEOUT_S = 10.0
# Waiting longer than this for a pooled connection means the database is
# saturated; the caller gets StoreUnavailable (retryable) instead of hanging.
_ACQUIRE_TIMEOUT_S = 30.0

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
# set_config('role', ..., true) is SET LOCAL ROLE with the name as a bound parameter.
_SCOPE = "SELECT set_config('app.org_id', $1, true)"
_SCOPE_AS_ROLE = "SELECT set_config('app.org_id', $1, true), set_config('role', $2, true)"
# Usable: the role exists, we may SET ROLE to it, and this database's migration
# granted it the tables (roles are cluster-wide, grants are not).
_ROLE_STATE = """
SELECT to_regclass('diagrams') IS NOT NULL AS migrated,
       coalesce((SELECT pg_has_role(current_user, r.oid, 'MEMBER')
                        AND coalesce(has_table_privilege(r.oid, to_regclass('diagrams'), 'UPDATE'),
                                     false)
                 FROM pg_roles r WHERE r.rolname = $1), false) AS usable
"""


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
        self._dsn = dsn
        self._blobs = blobs
        self._inline_max_bytes = inline_max_bytes
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._app_role = app_role
        self._role_active = False
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    @property
    def uses_app_role(self) -> bool:
        """Whether transactions run as the restricted role (RLS enforced even for superusers)."""
        return self._role_active

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        with pg_errors():
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._pool_min,
                max_size=self._pool_max,
                timeout=_CONNECT_TIMEOUT_S,
            )
        self._pool = pool
        try:
            await self._detect_app_role()
        except BaseException:
            self._pool = None
            await pool.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _detect_app_role(self) -> None:
        """Check once (and again after migrating) whether the app role can be used."""
        if self._app_role is None:
            self._role_active = False
            return
        async with self._connection() as conn:
            state = await conn.fetchrow(_ROLE_STATE, self._app_role)
        self._role_active = bool(state is not None and state["usable"])
        if not self._role_active and state is not None and state["migrated"]:
            log.warning(
                "role %r is not usable; Postgres row-level security is only enforced "
                "if the connecting user is neither superuser nor BYPASSRLS",
                self._app_role,
            )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the Postgres store is not open")
        with pg_errors():
            async with pool.acquire(timeout=_ACQUIRE_TIMEOUT_S) as conn:
                yield conn

    @asynccontextmanager
    async def _transaction(self, org_id: str) -> AsyncIterator[Connection]:
        """A transaction scoped to ``org_id`` for the row-level security policies."""
        async with self._connection() as conn:
            with pg_errors():
                async with conn.transaction():
                    if self._role_active:
                        await conn.execute(_SCOPE_AS_ROLE, org_id, self._app_role)
                    else:
                        await conn.execute(_SCOPE, org_id)
                    yield conn

    # --- DiagramStore -------------------------------------------------------------------------

    async def migrate(self) -> None:
        async with self._connection() as conn:
            applied = await migrate_postgres(conn)
        if applied:
            log.info("applied Postgres migrations %s", applied)
        await self._detect_app_role()

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def ensure_principal(self, principal: Principal) -> None:
        async with self._transaction(principal.org_id) as conn:
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
        async with self._transaction(org_id) as conn:
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
        async with self._transaction(org_id) as conn:
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
        async with self._transaction(org_id) as conn:
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
        async with self._transaction(org_id) as conn:
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
        async with self._transaction(org_id) as conn:
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
        async with self._transaction(org_id) as conn:
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
        async with self._transaction(org_id) as conn:
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
        async with self._transaction(org_id) as conn:
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
        async with self._transaction(org_id) as conn:
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
