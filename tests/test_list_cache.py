"""The diagram-list page cache: generations in Redis, the null cache, and Redis failures."""

from __future__ import annotations

import logging
from typing import cast

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from server.list_cache import CacheLookup, ListCache, NullListCache, RedisListCache
from tests.fixtures.clock import FakeClock

ORG = "org-1"
PARAMS = "limit=50&q="
PAGE = b'{"items":[{"id":"d-1"}]}'
NO_STORE = CacheLookup(body=None, generation=None)


async def _fill(cache: ListCache, org_id: str, params_key: str, body: bytes) -> None:
    """What the list endpoint does: look up, and store the page it built on a miss."""
    lookup = await cache.get(org_id, params_key)
    assert lookup.body is None
    assert lookup.generation is not None
    await cache.put(org_id, params_key, body, generation=lookup.generation)


async def _body(cache: ListCache, org_id: str, params_key: str) -> bytes | None:
    return (await cache.get(org_id, params_key)).body


@pytest.fixture
def cache(redis_client: redis.asyncio.Redis) -> RedisListCache:
    return RedisListCache(redis_client, ttl_s=60, prefix="lc-test:")


# --- Redis ----------------------------------------------------------------------------------


@pytest.mark.redis
async def test_a_stored_page_is_returned(cache: RedisListCache) -> None:
    await _fill(cache, ORG, PARAMS, PAGE)

    # A hit has nothing to store.
    assert await cache.get(ORG, PARAMS) == CacheLookup(body=PAGE, generation=None)
    assert await _body(cache, ORG, "limit=10&q=") is None
    assert await _body(cache, "org-2", PARAMS) is None


@pytest.mark.redis
async def test_a_miss_carries_the_current_generation(cache: RedisListCache) -> None:
    assert await cache.get(ORG, PARAMS) == CacheLookup(body=None, generation=0)

    await cache.invalidate(ORG)
    await cache.invalidate(ORG)

    assert await cache.get(ORG, PARAMS) == CacheLookup(body=None, generation=2)
    assert await cache.get("org-2", PARAMS) == CacheLookup(body=None, generation=0)


@pytest.mark.redis
async def test_invalidate_makes_the_next_get_miss(cache: RedisListCache) -> None:
    await _fill(cache, ORG, PARAMS, PAGE)
    await _fill(cache, "org-2", PARAMS, b"other org")

    await cache.invalidate(ORG)

    assert await _body(cache, ORG, PARAMS) is None
    assert await _body(cache, "org-2", PARAMS) == b"other org"


@pytest.mark.redis
async def test_a_page_read_before_a_write_is_not_served_after_it(cache: RedisListCache) -> None:
    # A reader misses and queries the database; a write commits and
    # invalidates; only then does the reader store its (now stale) page, under
    # the generation it saw before reading.
    miss = await cache.get(ORG, PARAMS)
    assert miss.body is None
    assert miss.generation is not None
    await cache.invalidate(ORG)
    await cache.put(ORG, PARAMS, b"stale", generation=miss.generation)

    assert await _body(cache, ORG, PARAMS) is None


@pytest.mark.redis
async def test_workers_share_pages_and_invalidations(
    redis_client: redis.asyncio.Redis,
) -> None:
    first = RedisListCache(redis_client, prefix="lc-test:")
    second = RedisListCache(redis_client, prefix="lc-test:")
    await _fill(first, ORG, PARAMS, PAGE)

    assert await _body(second, ORG, PARAMS) == PAGE
    await second.invalidate(ORG)
    assert await _body(first, ORG, PARAMS) is None


@pytest.mark.redis
async def test_pages_expire_after_the_ttl(redis_client: redis.asyncio.Redis) -> None:
    cache = RedisListCache(redis_client, ttl_s=7, prefix="lc-test:")
    await _fill(cache, ORG, PARAMS, PAGE)

    page_keys = [k async for k in redis_client.scan_iter(match="lc-test:*") if b":gen" not in k]
    assert len(page_keys) == 1
    assert 0 < await redis_client.ttl(page_keys[0]) <= 7


async def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        RedisListCache(cast(redis.asyncio.Redis, object()), ttl_s=0)


# --- null cache -----------------------------------------------------------------------------


async def test_null_cache_always_misses() -> None:
    cache = NullListCache()

    assert await cache.get(ORG, PARAMS) == NO_STORE
    await cache.put(ORG, PARAMS, PAGE, generation=0)
    await cache.invalidate(ORG)
    assert await cache.get(ORG, PARAMS) == NO_STORE


# --- Redis failures -------------------------------------------------------------------------


async def test_unreachable_redis_never_raises(
    unreachable_redis: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    cache = RedisListCache(unreachable_redis, clock=clock)

    assert await cache.get(ORG, PARAMS) == NO_STORE
    clock.advance(1.0)  # past the pause after a failure, so put really tries
    await cache.put(ORG, PARAMS, PAGE, generation=0)
    with caplog.at_level(logging.ERROR, logger="server.list_cache"):
        await cache.invalidate(ORG)

    assert [r.levelno for r in caplog.records if r.levelno >= logging.ERROR] == [logging.ERROR]


class _FlakyRedis:
    """Reads and writes go to a real Redis; ``incr`` or everything can be made to fail."""

    def __init__(self, real: redis.asyncio.Redis) -> None:
        self.real = real
        self.incr_fails = False
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("Redis is down")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return cast(bytes | None, await self.real.get(key))

    async def set(self, key: str, value: bytes, *, ex: int) -> None:
        self._check()
        await self.real.set(key, value, ex=ex)

    async def incr(self, key: str) -> int:
        self._check()
        if self.incr_fails:
            raise RedisConnectionError("connection lost")
        value: int = await self.real.incr(key)
        return value


@pytest.mark.redis
async def test_after_a_failed_invalidate_this_process_bypasses_the_org_for_the_ttl(
    redis_client: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = _FlakyRedis(redis_client)
    clock = FakeClock()
    cache = RedisListCache(cast(redis.asyncio.Redis, flaky), ttl_s=60, clock=clock)
    await _fill(cache, ORG, PARAMS, PAGE)
    await _fill(cache, "org-2", PARAMS, b"other org")
    # A reader that missed before the failed invalidate, still holding its generation.
    before = await cache.get(ORG, "limit=10&q=")
    assert before.generation is not None

    flaky.incr_fails = True
    with caplog.at_level(logging.ERROR, logger="server.list_cache"):
        await cache.invalidate(ORG)  # logged, not raised
    assert "invalidation failed" in caplog.text

    # The old page is still in Redis, but this process neither serves it nor
    # stores pages for the organization, even under a generation it was given...
    assert await cache.get(ORG, PARAMS) == NO_STORE
    await cache.put(ORG, PARAMS, b"not stored", generation=before.generation)
    await cache.put(ORG, "limit=10&q=", b"not stored", generation=before.generation)
    assert await _body(cache, "org-2", PARAMS) == b"other org"
    clock.advance(59.0)
    assert await cache.get(ORG, PARAMS) == NO_STORE

    # ...until everything cached before the failure has expired.
    clock.advance(1.0)
    assert await _body(cache, ORG, PARAMS) == PAGE
    assert await _body(cache, ORG, "limit=10&q=") is None


@pytest.mark.redis
async def test_after_a_failure_get_and_put_leave_redis_alone_for_a_second(
    redis_client: redis.asyncio.Redis,
) -> None:
    flaky = _FlakyRedis(redis_client)
    clock = FakeClock()
    cache = RedisListCache(cast(redis.asyncio.Redis, flaky), clock=clock)
    flaky.down = True

    assert await cache.get(ORG, PARAMS) == NO_STORE
    assert flaky.calls == 1
    flaky.down = False
    clock.advance(0.99)
    assert await cache.get(ORG, PARAMS) == NO_STORE
    await cache.put(ORG, PARAMS, PAGE, generation=0)
    assert flaky.calls == 1

    clock.advance(0.01)
    await _fill(cache, ORG, PARAMS, PAGE)
    assert await _body(cache, ORG, PARAMS) == PAGE
