"""Numbered SQL migrations, each applied once, in order, in its own transaction.

Files live in ``persistence/migrations/<dialect>/NNNN_name.sql`` and ship as
package data. A ``schema_migrations(version, applied_at)`` table records what
ran. Two processes may migrate at once: each migration's transaction first takes
a database-wide lock (Postgres: an advisory transaction lock; SQLite: the write
lock of ``BEGIN IMMEDIATE``) and only then checks whether it still has to run.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Literal, TypeAlias

import aiosqlite
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from core.errors import CollabError
from persistence.rows import iso_utc

Dialect = Literal["sqlite", "postgres"]
PgConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_[a-z0-9_]+\.sql$")

# Any fixed bigint works; all bpmn-collab migrators of one database agree on it.
# ("bpmn" in ASCII, so it is recognisable in pg_locks.)
_PG_LOCK_KEY = 0x62706D6E

_PG_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
_SQLITE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    applied_at  TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: Dialect) -> list[Migration]:
    """The dialect's migrations in version order."""
    folder = resources.files("persistence") / "migrations" / dialect
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise CollabError(f"migration file {dialect}/{entry.name} is not named NNNN_name.sql")
        version = int(match["version"])
        if version in found:
            raise CollabError(f"two {dialect} migrations are numbered {version}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate_postgres(conn: PgConnection) -> list[int]:
    """Apply pending Postgres migrations; returns the versions this call applied."""
    applied: list[int] = []
    for migration in load_migrations("postgres"):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK_KEY)
            await conn.execute(_PG_TABLE)
            done = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
                migration.version,
            )
            if done:
                continue
            # No arguments: asyncpg sends it as a simple query, so a file may
            # hold many statements and DO blocks.
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
            )
            applied.append(migration.version)
    return applied


async def migrate_sqlite(conn: aiosqlite.Connection) -> list[int]:
    """Apply pending SQLite migrations; returns the versions this call applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``) and not be
    used by anything else meanwhile: the caller holds its write lock.
    """
    applied: list[int] = []
    for migration in load_migrations("sqlite"):
        # executescript() would COMMIT first, breaking the transaction, so the
        # file is split into statements and run one by one inside it.
        statements = split_sql_script(migration.sql)
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute(_SQLITE_TABLE)
            done = await conn.execute_fetchall(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            )
            if not done:
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (migration.version, iso_utc(datetime.now(UTC))),
                )
                applied.append(migration.version)
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
    return applied


def split_sql_script(sql: str) -> list[str]:
    """Complete SQLite statements of a script, in order (comments and blanks dropped).

    ``sqlite3.complete_statement`` understands quotes, comments and trigger
    bodies, so a ``;`` inside any of them does not end a statement.
    """
    statements: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if _strip_comments(pending).strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    if _strip_comments(pending).strip(" \t\r\n;"):
        raise CollabError("a SQLite migration ends with an incomplete statement")
    return statements


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
