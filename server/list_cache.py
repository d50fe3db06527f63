"""A cache of rendered diagram-list pages (``GET /api/diagrams``), per organization.

The rule it keeps: a client never reads a list older than its own write. Every
write calls ``invalidate(org_id)`` before it answers, and entries are keyed by
the organization's *generation*, a counter that ``invalidate`` bumps with one
atomic ``INCR``: after it, every older entry is unreachable at once, on every
worker. Old entries are never deleted, they simply expire.

A page is stored under the generation that was current *before* the database
was read (the one ``get`` saw when it missed), never the one current at ``put``:
otherwise a reader that queried the database just before a write could store
its stale page under the generation that write created. So ``get`` returns a
``CacheLookup`` whose ``generation`` is that generation on a miss, and the
caller hands it back to ``put`` explicitly. A ``generation`` of ``None`` means
"don't store": the lookup hit, or the cache was paused, bypassed for the
organization, or unavailable, so the caller builds the page and skips ``put``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

# Redis being down makes every list request miss; say so at most this often.
_WARNING_INTERVAL_S = 30.0
# After Redis fails, ``get`` and ``put`` leave it alone for this long, so an
# outage costs one slow call (connect timeouts, client retries) per period
# rather than one per list request. ``invalidate`` always tries.
_PAUSE_AFTER_FAILURE_S = 1.0


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """What ``ListCache.get`` found."""

    # The cached page, or ``None`` on a miss.
    body: bytes | None
    # On a miss: the generation to store a freshly built page under (pass it to
    # ``put``). ``None`` means don't store: a hit, or the cache was paused,
    # bypassed for the organization, or unavailable.
    generation: int | None


_NO_STORE = CacheLookup(body=None, generation=None)


class ListCache(Protocol):
    async def get(self, org_id: str, params_key: str) -> CacheLookup:
        """The cached page for these list parameters, or a miss that says under
        which generation (if any) to store the page built in its place."""

    async def put(self, org_id: str, params_key: str, body: bytes, *, generation: int) -> None:
        """Store a page built after ``get`` missed, under the ``generation`` that
        miss returned (read before the database was, never a later one)."""

    async def invalidate(self, org_id: str) -> None:
        """Forget every page of ``org_id``; call after a write, before answering it."""


class NullListCache:
    """No caching: the embedded default, where listing from SQLite is cheap."""

    async def get(self, org_id: str, params_key: str) -> CacheLookup:
        return _NO_STORE

    async def put(self, org_id: str, params_key: str, body: bytes, *, generation: int) -> None:
        return None

    async def invalidate(self, org_id: str) -> None:
        return None


class RedisListCache:
    """Pages in Redis: ``{prefix}{org}:gen`` holds the generation (no expiry, one
    small key per organization); ``{prefix}{org}:{gen}:{params_key}`` holds a
    page for ``ttl_s`` seconds. Braces around the org keep an organization's
    keys in one Redis Cluster slot.

    Redis failures never escape: ``get`` misses without a generation to store
    under, ``put`` does nothing (and both leave Redis alone for a second after a
    failure). A failed
    ``invalidate`` cannot be made up for later (the write it follows has already
    committed, and failing the response would only make the client retry a
    write that succeeded), so it is logged as an error and the caller goes on.
    Pages of that organization cached elsewhere may then be served for up to
    ``ttl_s`` seconds, which is why the TTL is short; this process itself stops
    using the cache for that organization for the same ``ttl_s``, so a client
    that reads through the worker that took its write still sees it.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int = 60,
        prefix: str = "lc:",
        clock: Clock = time.monotonic,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1, not {ttl_s!r}")
        self._redis = redis
        self._ttl_s = ttl_s
        self._prefix = prefix
        self._clock = clock
        # org_id -> clock time until which this process bypasses the cache.
        self._bypass_until: dict[str, float] = {}
        self._last_warning_at: float | None = None
        self._paused_until: float | None = None

    def _generation_key(self, org_id: str) -> str:
        return f"{self._prefix}{{{org_id}}}:gen"

    def _page_key(self, org_id: str, generation: int, params_key: str) -> str:
        return f"{self._prefix}{{{org_id}}}:{generation}:{params_key}"

    async def get(self, org_id: str, params_key: str) -> CacheLookup:
        if self._paused() or self._bypassing(org_id):
            return _NO_STORE
        try:
            raw_generation = await self._redis.get(self._generation_key(org_id))
            generation = int(raw_generation or 0)
            body = await self._redis.get(self._page_key(org_id, generation, params_key))
        except (RedisError, OSError, ValueError) as exc:
            self._failed("list cache get failed, treating it as a miss: %r", exc)
            return _NO_STORE
        if body is None:
            return CacheLookup(body=None, generation=generation)
        # A client made with ``decode_responses=True`` hands out str.
        return CacheLookup(
            body=body if isinstance(body, bytes) else str(body).encode(), generation=None
        )

    async def put(self, org_id: str, params_key: str, body: bytes, *, generation: int) -> None:
        # ``generation`` is the one ``get`` saw before the database was read; if a
        # write has bumped it since, the page lands under an unreachable key.
        if self._paused() or self._bypassing(org_id):
            return
        try:
            await self._redis.set(
                self._page_key(org_id, generation, params_key), body, ex=self._ttl_s
            )
        except (RedisError, OSError) as exc:
            self._failed("list cache put failed, not caching: %r", exc)

    async def invalidate(self, org_id: str) -> None:
        try:
            await self._redis.incr(self._generation_key(org_id))
        except (RedisError, OSError) as exc:
            # See the class docstring: logged, not raised.
            logger.error(
                "list cache invalidation failed for org %s; its pages may be stale "
                "elsewhere for up to %d s: %r",
                org_id,
                self._ttl_s,
                exc,
            )
            self._bypass_until[org_id] = self._clock() + self._ttl_s
        else:
            self._paused_until = None

    def _bypassing(self, org_id: str) -> bool:
        if not self._bypass_until:
            return False
        now = self._clock()
        for stale in [org for org, until in self._bypass_until.items() if until <= now]:
            del self._bypass_until[stale]
        return org_id in self._bypass_until

    def _paused(self) -> bool:
        if self._paused_until is None:
            return False
        if self._clock() < self._paused_until:
            return True
        self._paused_until = None
        return False

    def _failed(self, message: str, exc: BaseException) -> None:
        now = self._clock()
        self._paused_until = now + _PAUSE_AFTER_FAILURE_S
        last = self._last_warning_at
        if last is not None and now - last < _WARNING_INTERVAL_S:
            return
        self._last_warning_at = now
        logger.warning(message, exc)
