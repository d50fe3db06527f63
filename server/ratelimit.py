"""Write rate limits: a token bucket per key (user, org, connection...).

Each key has a bucket of ``burst`` tokens that refills at ``rate_per_s``; a
request takes one token or is refused with ``RateLimited`` and a Retry-After in
whole seconds. ``LocalRateLimiter`` keeps buckets in this process (the embedded
default); ``RedisRateLimiter`` keeps them in Redis so every worker shares them.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.errors import RateLimited

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

# A limiter whose store is down lets requests through; say so at most this often.
_FAIL_OPEN_LOG_INTERVAL_S = 30.0
# After Redis fails, let requests through without asking it for this long, so an
# outage costs one slow call (connect timeouts, client retries) per period, not
# one per write.
_PAUSE_AFTER_FAILURE_S = 1.0


class RateLimiter(Protocol):
    async def acquire(self, key: str) -> None:
        """Take one token from ``key``'s bucket; raise ``RateLimited`` when it is empty."""


def _check_limits(rate_per_s: float, burst: int) -> None:
    if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
        raise ValueError(f"rate_per_s must be a positive number, not {rate_per_s!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst!r}")


def _refused(wait_s: float) -> RateLimited:
    retry_after_s = max(1, math.ceil(wait_s))
    return RateLimited(
        f"too many writes; try again in {retry_after_s} s", retry_after_s=retry_after_s
    )


# --- in process -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class LocalRateLimiter:
    """Buckets in a dict of this process.

    A bucket left alone for ``burst / rate_per_s`` seconds is full again, which
    is the same as having no bucket, so such buckets are dropped: memory is
    bounded by the keys active within one refill period.
    """

    def __init__(self, *, rate_per_s: float, burst: int, clock: Clock = time.monotonic) -> None:
        _check_limits(rate_per_s, burst)
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._refill_s = burst / rate_per_s
        # Least recently used first: each acquire moves its key to the end.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """The number of buckets held (for tests and metrics)."""
        return len(self._buckets)

    async def acquire(self, key: str) -> None:
        now = self._clock()
        self._prune(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self._burst), updated_at=now)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(float(self._burst), bucket.tokens + elapsed * self._rate)
            bucket.updated_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        raise _refused((1.0 - bucket.tokens) / self._rate)

    def _prune(self, now: float) -> None:
        # Buckets are ordered by last use, so the stale ones are at the front.
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.updated_at < self._refill_s:
                break
            self._buckets.popitem(last=False)


# --- Redis ----------------------------------------------------------------------------------

# Refill and take in one atomic step. Time comes from the Redis server, so
# workers with skewed clocks still agree. State: a hash {tokens, ts (ms)} that
# expires once it would be full again anyway.
# Returns {1, 0} when a token was taken, {0, ms until one is available} when not.
_REFILL_AND_TAKE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1],
  'tokens', string.format('%.6f', tokens), 'ts', string.format('%d', ts))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return {allowed, wait_ms}
"""


class RedisRateLimiter:
    """Buckets in Redis, shared by every process using the same Redis and prefix.

    When Redis cannot be reached the limiter fails open: the request goes
    through, a warning is logged (at most every 30 s) and Redis is left alone
    for a second. A limiter must never be the reason writes fail. Give the
    client short ``socket_timeout``/``socket_connect_timeout`` and few retries
    so an unresponsive Redis cannot stall the write that finds out.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        rate_per_s: float,
        burst: int,
        prefix: str = "rl:",
        clock: Clock = time.monotonic,
    ) -> None:
        _check_limits(rate_per_s, burst)
        self._rate = rate_per_s
        self._burst = burst
        self._prefix = prefix
        self._clock = clock
        # Whole milliseconds until an untouched bucket is full again, plus a margin.
        self._ttl_ms = math.ceil(burst / rate_per_s * 1000) + 1000
        self._take = redis.register_script(_REFILL_AND_TAKE_LUA)
        self._last_warning_at: float | None = None
        self._paused_until: float | None = None

    async def acquire(self, key: str) -> None:
        if self._paused_until is not None:
            if self._clock() < self._paused_until:
                return
            self._paused_until = None
        try:
            allowed, wait_ms = await self._take(
                keys=[self._prefix + key], args=[self._rate, self._burst, self._ttl_ms]
            )
        except (RedisError, OSError) as exc:
            self._paused_until = self._clock() + _PAUSE_AFTER_FAILURE_S
            self._warn_failing_open(exc)
            return
        if int(allowed) != 1:
            raise _refused(int(wait_ms) / 1000)

    def _warn_failing_open(self, exc: BaseException) -> None:
        now = self._clock()
        last = self._last_warning_at
        if last is not None and now - last < _FAIL_OPEN_LOG_INTERVAL_S:
            return
        self._last_warning_at = now
        logger.warning("rate limiter cannot reach Redis, letting writes through: %r", exc)
