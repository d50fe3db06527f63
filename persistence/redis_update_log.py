"""``UpdateLog`` as one Redis stream per room: the distributed setup's durable room log.

Positions are the stream's entry ids. Every worker appends to and replays from the
same stream, so a room opened on any worker, or again after a crash, finds the
updates no version holds yet. How durable an append is depends on the Redis
server's persistence (docker-compose runs it with AOF).

A trimmed stream keeps its (empty) key: deleting it would let a later entry id
depend on the clock alone, and ids must never go back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.errors import UpdateLogUnavailable
from persistence.update_log import GroupCommit, LogEntry, successor

KEY_PREFIX = "bpmn-collab:log:"
_FIELD = b"u"
_READ_CHUNK = 1000


class RedisUpdateLog:
    def __init__(self, client: aioredis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._appends = GroupCommit(self._write)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._appends.drain()  # before the caller closes the client

    def _key(self, room: str) -> str:
        return f"{self._prefix}{room}"

    async def append(self, room: str, update: bytes) -> str:
        return await self._appends.submit(room, update)

    async def _write(self, batch: list[tuple[str, bytes]]) -> list[str]:
        # One pipelined round trip on one connection; Redis runs the XADDs in order.
        async with _redis_errors(), self._redis.pipeline(transaction=False) as pipe:
            for room, update in batch:
                pipe.xadd(self._key(room), {_FIELD: update})
            replies = await pipe.execute()
        return [_text(entry_id) for entry_id in replies]

    async def read_after(self, room: str, position: str | None) -> list[LogEntry]:
        start = "-" if position is None else successor(position)
        entries: list[LogEntry] = []
        # In chunks: a long log must not come back as one reply of unbounded size.
        while True:
            async with _redis_errors():
                reply: Any = await self._redis.xrange(
                    self._key(room), min=start, max="+", count=_READ_CHUNK
                )
            chunk: list[tuple[bytes, dict[bytes, bytes]]] = list(reply or [])
            for entry_id, fields in chunk:
                entries.append(LogEntry(_text(entry_id), bytes(fields[_FIELD])))
            if len(chunk) < _READ_CHUNK:
                return entries
            start = successor(entries[-1].position)

    async def trim(self, room: str, position: str) -> None:
        async with _redis_errors():
            await self._redis.xtrim(self._key(room), minid=successor(position), approximate=False)

    async def rooms(self) -> list[str]:
        found: list[str] = []
        async with _redis_errors():
            async for key in self._redis.scan_iter(match=f"{self._prefix}*", count=500):
                if await self._redis.xlen(key):
                    found.append(_text(key).removeprefix(self._prefix))
        return found

    async def ping(self) -> None:
        async with _redis_errors():
            await self._redis.ping()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@asynccontextmanager
async def _redis_errors() -> AsyncIterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise UpdateLogUnavailable(f"the update log (Redis) failed: {exc}") from exc
