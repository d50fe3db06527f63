"""Driver exceptions translated at the seam, shared by every SQL adapter (stores, outboxes).

No asyncpg or sqlite3 exception leaves ``persistence/``: "cannot serve now, a retry
may work" becomes ``StoreUnavailable``; a value the database cannot hold becomes
``InvalidInput``; anything else a plain ``CollabError``. ``CollabError`` passes.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import aiosqlite
import asyncpg

from core.errors import CollabError, InvalidInput, StoreUnavailable

log = logging.getLogger(__name__)

# Errors that mean "the database cannot serve now; the same call may work later".
# Undefined table or column too: a worker started before this database was migrated.
_PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.UndefinedColumnError,
)


@contextmanager
def pg_errors() -> Iterator[None]:
    try:
        yield
    except CollabError:
        raise
    except _PG_UNAVAILABLE as exc:
        raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
    except asyncpg.DataError as exc:
        # Class 22: a value Postgres cannot hold (a NUL in a text, say) came in.
        raise InvalidInput(f"PostgreSQL cannot store a value: {exc}") from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise CollabError(f"PostgreSQL refused a statement: {exc}") from exc


@contextmanager
def sqlite_errors() -> Iterator[None]:
    try:
        yield
    except CollabError:
        raise
    except sqlite3.OperationalError as exc:
        # Locked or busy beyond busy_timeout, I/O error, disk full, cannot open,
        # schema missing: the store cannot serve now, a retry may succeed.
        raise StoreUnavailable(f"SQLite is unavailable: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
            raise CollabError(f"SQLite refused a statement: {exc}") from exc
        raise StoreUnavailable(f"the SQLite database is unusable: {exc}") from exc
    except sqlite3.Error as exc:
        raise CollabError(f"SQLite failed: {exc}") from exc


async def rollback_quietly(conn: aiosqlite.Connection) -> None:
    # Runs while another exception is in flight; that one says what went wrong.
    try:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
    except (sqlite3.Error, ValueError):
        log.warning("rolling back a SQLite transaction failed", exc_info=True)
