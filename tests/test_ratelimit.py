"""Token-bucket write limits: in process (with a fake clock) and shared through Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from core.errors import RateLimited
from server.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from tests.fixtures.clock import FakeClock


async def _refusal(limiter: RateLimiter, key: str) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire(key)
    return caught.value


# --- local ----------------------------------------------------------------------------------


async def test_local_allows_a_burst_then_refuses_with_retry_after() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(rate_per_s=0.25, burst=3, clock=clock)

    for _ in range(3):
        await limiter.acquire("user-1")
    refused = await _refusal(limiter, "user-1")

    assert refused.retry_after_s == 4  # one token every 4 s
    assert refused.fields == {"retryAfter": 4}
    assert refused.code == "rate_limited"


async def test_local_retry_after_counts_down_in_whole_seconds() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(rate_per_s=0.25, burst=1, clock=clock)
    await limiter.acquire("k")

    clock.advance(2.5)  # 1.5 s still to wait
    assert (await _refusal(limiter, "k")).retry_after_s == 2
    clock.advance(1.4)  # 0.1 s still to wait: rounds up, never 0
    assert (await _refusal(limiter, "k")).retry_after_s == 1


async def test_local_retry_after_is_at_least_one_second_for_fast_rates() -> None:
    limiter = LocalRateLimiter(rate_per_s=1000.0, burst=1, clock=FakeClock())
    await limiter.acquire("k")

    assert (await _refusal(limiter, "k")).retry_after_s == 1


async def test_local_refills_at_the_rate_and_never_above_the_burst() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(rate_per_s=2.0, burst=3, clock=clock)
    for _ in range(3):
        await limiter.acquire("k")

    clock.advance(0.5)  # one token back
    await limiter.acquire("k")
    await _refusal(limiter, "k")

    clock.advance(3600)  # full again, but only to the burst
    for _ in range(3):
        await limiter.acquire("k")
    await _refusal(limiter, "k")


async def test_local_refusals_do_not_consume_tokens() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(rate_per_s=1.0, burst=1, clock=clock)
    await limiter.acquire("k")
    for _ in range(5):
        await _refusal(limiter, "k")

    clock.advance(1.0)

    await limiter.acquire("k")


async def test_local_keys_have_their_own_buckets() -> None:
    limiter = LocalRateLimiter(rate_per_s=1.0, burst=1, clock=FakeClock())
    await limiter.acquire("a")

    await limiter.acquire("b")
    await _refusal(limiter, "a")


async def test_local_drops_buckets_that_refilled() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(rate_per_s=1.0, burst=5, clock=clock)
    for n in range(1000):
        await limiter.acquire(f"user-{n}")
    assert len(limiter) == 1000

    clock.advance(5.0)  # every bucket is full again
    await limiter.acquire("late")

    assert len(limiter) == 1


async def test_local_keeps_buckets_that_are_still_refilling() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(rate_per_s=1.0, burst=2, clock=clock)
    await limiter.acquire("old")
    await limiter.acquire("old")
    clock.advance(1.0)
    await limiter.acquire("recent")
    await limiter.acquire("recent")

    clock.advance(1.5)  # "old" is full (2.5 s idle), "recent" is not (1.5 s)
    await limiter.acquire("other")

    assert len(limiter) == 2
    await limiter.acquire("recent")
    await _refusal(limiter, "recent")


@pytest.mark.parametrize(
    ("rate_per_s", "burst"), [(0.0, 1), (-1.0, 1), (float("nan"), 1), (1.0, 0)]
)
def test_limits_are_validated(rate_per_s: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        LocalRateLimiter(rate_per_s=rate_per_s, burst=burst)


# --- Redis ----------------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_instances_share_a_bucket(redis_client: redis.asyncio.Redis) -> None:
    # Two limiters on one Redis stand for two worker processes.
    first = RedisRateLimiter(redis_client, rate_per_s=0.01, burst=4, prefix="rl-test:")
    second = RedisRateLimiter(redis_client, rate_per_s=0.01, burst=4, prefix="rl-test:")

    for limiter in (first, second, first, second):
        await limiter.acquire("user-1")
    refused = [await _refusal(limiter, "user-1") for limiter in (first, second)]

    # One token every 100 s; a few ms may already have refilled.
    assert all(95 <= r.retry_after_s <= 100 for r in refused)
    await first.acquire("user-2")


@pytest.mark.redis
async def test_redis_takes_tokens_atomically(redis_client: redis.asyncio.Redis) -> None:
    limiters = [
        RedisRateLimiter(redis_client, rate_per_s=0.01, burst=10, prefix="rl-test:")
        for _ in range(2)
    ]

    results = await asyncio.gather(
        *(limiters[n % 2].acquire("hot") for n in range(30)), return_exceptions=True
    )

    assert sum(r is None for r in results) == 10
    assert sum(isinstance(r, RateLimited) for r in results) == 20


@pytest.mark.redis
async def test_redis_refills_with_time(redis_client: redis.asyncio.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, rate_per_s=1.0, burst=2, prefix="rl-test:")
    await limiter.acquire("k")
    await limiter.acquire("k")
    await _refusal(limiter, "k")

    # Move the bucket's last update one second into the past instead of waiting.
    last_ms = int(await redis_client.hget("rl-test:k", "ts") or 0)
    await redis_client.hset("rl-test:k", "ts", str(last_ms - 1000))

    await limiter.acquire("k")
    await _refusal(limiter, "k")


@pytest.mark.redis
async def test_redis_bucket_expires_once_it_would_be_full(
    redis_client: redis.asyncio.Redis,
) -> None:
    limiter = RedisRateLimiter(redis_client, rate_per_s=0.5, burst=3, prefix="rl-test:")

    await limiter.acquire("k")

    ttl_ms = await redis_client.pttl("rl-test:k")
    assert 6000 < ttl_ms <= 7000  # 3 tokens at 0.5/s, plus a second of margin


@pytest.mark.redis
async def test_redis_retry_after_is_at_least_one_second(
    redis_client: redis.asyncio.Redis,
) -> None:
    limiter = RedisRateLimiter(redis_client, rate_per_s=0.9, burst=1, prefix="rl-test:")
    await limiter.acquire("k")

    assert (await _refusal(limiter, "k")).retry_after_s in (1, 2)


async def test_redis_limiter_fails_open_and_warns_at_most_every_30_s(
    unreachable_redis: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    limiter = RedisRateLimiter(unreachable_redis, rate_per_s=0.001, burst=1, clock=clock)
    caplog.set_level(logging.WARNING, logger="server.ratelimit")

    for _ in range(5):
        await limiter.acquire("k")  # far over the limit, yet let through
    assert len(caplog.records) == 1
    assert "cannot reach Redis" in caplog.records[0].getMessage()

    clock.advance(29.0)
    await limiter.acquire("k")
    assert len(caplog.records) == 1

    clock.advance(1.0)
    await limiter.acquire("k")
    assert len(caplog.records) == 2


class _DownScript:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, keys: object = None, args: object = None) -> list[int]:
        self.calls += 1
        raise RedisConnectionError("Redis is down")


class _DownRedis:
    def __init__(self) -> None:
        self.script = _DownScript()

    def register_script(self, script: str) -> _DownScript:
        return self.script


async def test_redis_limiter_leaves_a_failed_redis_alone_for_a_second() -> None:
    down = _DownRedis()
    clock = FakeClock()
    limiter = RedisRateLimiter(
        cast(redis.asyncio.Redis, down), rate_per_s=1.0, burst=1, clock=clock
    )

    for _ in range(3):
        await limiter.acquire("k")
    assert down.script.calls == 1

    clock.advance(0.99)
    await limiter.acquire("k")
    assert down.script.calls == 1

    clock.advance(0.01)
    await limiter.acquire("k")
    assert down.script.calls == 2
