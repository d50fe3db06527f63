"""Who snapshots a room that is open on several workers: one at a time, by a Redis lock.

The lock only saves work (renders, reads, writes that would lose the version check);
correctness never depends on it: the version check in the store is the final fence,
and a lock that expired while its holder still wrote costs a conflict, not data.

The lock lives a few seconds and its holder renews it while it works: a worker killed
mid-snapshot blocks the room's other workers for those seconds, not for as long as a
slow snapshot might take.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY_PREFIX = "bpmn-collab:snapshot-lock:"

# Delete the key only if it still holds our token: never release someone else's lock.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
# Extend the key only while it still holds our token.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class SnapshotLock(Protocol):
    async def acquire(self, room: str) -> bool: ...

    async def release(self, room: str) -> None: ...


class LocalSnapshotLock:
    """One worker: its own per-room snapshot lock (in the snapshotter) is all it needs."""

    async def acquire(self, room: str) -> bool:
        return True

    async def release(self, room: str) -> None:
        return None


class RedisSnapshotLock:
    def __init__(
        self, client: aioredis.Redis, *, ttl_s: float = 5.0, prefix: str = KEY_PREFIX
    ) -> None:
        self._redis = client
        self._ttl_ms = int(ttl_s * 1000)
        self._prefix = prefix
        self._tokens: dict[str, str] = {}
        self._renewals: dict[str, asyncio.Task[None]] = {}

    async def acquire(self, room: str) -> bool:
        token = secrets.token_hex(8)
        try:
            won = await self._redis.set(f"{self._prefix}{room}", token, nx=True, px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            # Redis down: snapshot anyway. The version check keeps two writers apart;
            # holding versions back until Redis returns would be worse.
            log.warning("snapshot lock of %s unavailable (%s); going ahead", room, exc)
            return True
        if won:
            self._tokens[room] = token
            self._renewals[room] = asyncio.create_task(self._renew(room, token))
        return bool(won)

    async def _renew(self, room: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                held = await self._redis.eval(
                    _RENEW, 1, f"{self._prefix}{room}", token, str(self._ttl_ms)
                )
            except (RedisError, OSError):
                continue  # it may still expire: then another worker's write meets the fence
            if not held:
                return  # expired and taken: the version check keeps the two writes apart

    async def release(self, room: str) -> None:
        renewal = self._renewals.pop(room, None)
        if renewal is not None:
            renewal.cancel()
        token = self._tokens.pop(room, None)
        if token is None:
            return
        # On failure it expires by itself.
        with contextlib.suppress(RedisError, OSError):
            await self._redis.eval(_RELEASE, 1, f"{self._prefix}{room}", token)
