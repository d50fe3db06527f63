"""``UpdateLog`` in a SQLite file (WAL): the embedded default's durable room log.

Appends are group-committed: every append waiting while a commit runs goes into
the next one, so a burst of keystrokes costs one transaction, not one each, and
an ``append`` returns only once its entry is committed. The connection lives on
one thread of its own.

``synchronous = NORMAL`` under WAL: a commit survives the process being killed
(the crash this log exists for); a power cut may lose the last commits, and the
editors' clients still hold those updates and send them again when they resync.
Row ids come from ``AUTOINCREMENT``, so they never go back, even after a trim
emptied the table, and positions stay comparable.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Self, TypeVar

from core.errors import UpdateLogUnavailable
from persistence.update_log import GroupCommit, LogEntry, position_key

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS room_updates (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    room  TEXT NOT NULL,
    data  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS room_updates_by_room ON room_updates (room, id);
"""


class SqliteUpdateLog:
    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._appends = GroupCommit(self._write)

    async def __aenter__(self) -> Self:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="update-log")
        try:
            self._conn = await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._appends.drain()
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._run(conn.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _open(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _run(self, call: Callable[[], T]) -> T:
        if self._executor is None:
            raise UpdateLogUnavailable("the update log is not open")
        loop = asyncio.get_running_loop()
        with _sqlite_errors():
            return await loop.run_in_executor(self._executor, call)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise UpdateLogUnavailable("the update log is not open")
        return self._conn

    # --- UpdateLog -----------------------------------------------------------------------------

    async def append(self, room: str, update: bytes) -> str:
        return await self._appends.submit(room, update)

    async def _write(self, batch: list[tuple[str, bytes]]) -> list[str]:
        ids = await self._run(partial(self._insert, batch))
        return [f"{row_id}-0" for row_id in ids]

    def _insert(self, batch: list[tuple[str, bytes]]) -> list[int]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            # One C loop for the batch. Under BEGIN IMMEDIATE nobody else inserts, and
            # AUTOINCREMENT hands out consecutive ids, so the batch's ids end at the last one.
            conn.executemany("INSERT INTO room_updates (room, data) VALUES (?, ?)", batch)
            last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return list(range(last - len(batch) + 1, last + 1))

    async def read_after(self, room: str, position: str | None) -> list[LogEntry]:
        after = position_key(position)[0] if position is not None else 0

        def select() -> list[LogEntry]:
            rows = self._connection().execute(
                "SELECT id, data FROM room_updates WHERE room = ? AND id > ? ORDER BY id",
                (room, after),
            )
            return [LogEntry(f"{row_id}-0", bytes(data)) for row_id, data in rows]

        return await self._run(select)

    async def trim(self, room: str, position: str) -> None:
        upto = position_key(position)[0]
        await self._run(
            lambda: self._connection().execute(
                "DELETE FROM room_updates WHERE room = ? AND id <= ?", (room, upto)
            )
        )

    async def rooms(self) -> list[str]:
        def select() -> list[str]:
            rows = self._connection().execute("SELECT DISTINCT room FROM room_updates")
            return [room for (room,) in rows]

        return await self._run(select)

    async def ping(self) -> None:
        await self._run(lambda: self._connection().execute("SELECT 1").fetchone())


@contextmanager
def _sqlite_errors() -> Iterator[None]:
    try:
        yield
    except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
        raise UpdateLogUnavailable(f"the update log failed: {exc}") from exc
