"""One aiosqlite connection with the set-up and the transactions every SQLite adapter needs.

aiosqlite runs the connection on its own thread; an asyncio lock gives one caller at a
time the connection for a whole transaction: a write with ``BEGIN IMMEDIATE`` (taking
SQLite's write lock up front, so a second process waits ``busy_timeout`` instead of
failing mid-transaction), a read with a plain ``BEGIN`` for a consistent snapshot.
Reads take the lock too because they share the connection: a read interleaved with a
write transaction (which may await the blob store) would see its uncommitted rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from core.errors import StoreUnavailable
from persistence.driver_errors import rollback_quietly, sqlite_errors

Setup = Callable[[aiosqlite.Connection], Awaitable[None]]


class SqliteConnection:
    def __init__(self, path: Path, *, busy_timeout_ms: int, what: str) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._what = what  # "store", "outbox": says which one is not open
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self, setup: Setup | None = None) -> None:
        try:
            await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the folder of {self.path}: {exc}") from exc
        with sqlite_errors():
            # isolation_level=None: the sqlite3 module must not open transactions
            # behind our back; every BEGIN here is explicit.
            conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            with sqlite_errors():
                conn.row_factory = sqlite3.Row
                # busy_timeout first, so switching to WAL waits out another process.
                await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
                await conn.execute("PRAGMA journal_mode = WAL")
                if setup is not None:
                    await setup(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            async with self._lock:
                await conn.close()

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, to ourselves, outside any transaction (migrations, a quick look)."""
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreUnavailable(f"the SQLite {self._what} is not open")
            with sqlite_errors():
                yield conn

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[aiosqlite.Connection]:
        async with self.locked() as conn:
            await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                await rollback_quietly(conn)
                raise
