"""Who snapshots a room that is open on several workers: one at a time, by a Redis lock.

The lock only saves work (renders, reads, writes that would lose the version check);
correctness never depends on it: the version check in the store is the final fence,
and a lock that expired while its holder still wrote costs a conflict, not data.
"""

from __future__ import annotations

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
        self, client: aioredis.Redis, *, ttl_s: float = 30.0, prefix: str = KEY_PREFIX
    ) -> None:
        self._redis = client
        self._ttl_ms = int(ttl_s * 1000)
        self._prefix = prefix
        self._tokens: dict[str, str] = {}

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
        return bool(won)

    async def release(self, room: str) -> None:
        token = self._tokens.pop(room, None)
        if token is None:
            return
        # On failure it expires by itself.
        with contextlib.suppress(RedisError, OSError):
            await self._redis.eval(_RELEASE, 1, f"{self._prefix}{room}", token)
