"""``Bus`` on Redis pub/sub: one channel per room, one subscriber connection per worker.

Joining a room subscribes its channel and waits for Redis to confirm, so a room that
then loads its document and replays the update log misses nothing: an update is
appended to the log before it is published, so it is either in what the replay
reads or published after the subscription took effect.

When the subscriber connection breaks (Redis restarts, the network drops), the
reader reconnects with backoff and jitter, subscribes every room again and asks each
room to resync (catch up from the log, exchange what the others lack): pub/sub
dropped whatever was published meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any, Self

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.errors import InvalidInput, Unavailable
from server.bus import BusMessage, BusMetrics, RoomLink, decode, encode, new_worker_id

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "bpmn-collab:room:"
_JOIN_TIMEOUT_S = 5.0
_POLL_S = 1.0


class RedisBus:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = CHANNEL_PREFIX,
        worker_id: str | None = None,
        reconnect_cap_s: float = 1.0,
        resync_again_s: float = 1.5,
    ) -> None:
        self.worker_id = worker_id or new_worker_id()
        self.metrics = BusMetrics()
        self._redis = client
        self._prefix = prefix
        self._reconnect_cap_s = reconnect_cap_s
        # Longer than the reconnect backoff's cap: by then every worker that lost Redis
        # when this one did has subscribed again.
        self._resync_again_s = resync_again_s
        self._links: dict[str, RoomLink] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._pubsub: Any = None  # redis.asyncio.client.PubSub while connected
        self._reader: asyncio.Task[None] | None = None
        self._resyncs: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._reader = asyncio.create_task(self._read_forever(), name="bus-reader")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in (self._reader, *self._resyncs):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._reader, *self._resyncs) if t is not None), return_exceptions=True
        )

    def _channel(self, room: str) -> str:
        return f"{self._prefix}{room}"

    # --- Bus -----------------------------------------------------------------------------------

    async def join(self, room: str, link: RoomLink) -> None:
        channel = self._channel(room)
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmed[channel] = confirmed
        self._links[room] = link
        try:
            pubsub = self._pubsub
            if pubsub is not None:
                # Sent on the subscriber connection; the reader sees the confirmation.
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.subscribe(channel)
            # While disconnected, the reader subscribes it on reconnecting.
            async with asyncio.timeout(_JOIN_TIMEOUT_S):
                await confirmed
        except TimeoutError:
            self._links.pop(room, None)
            raise Unavailable("the fan-out bus (Redis) did not confirm the subscription") from None
        finally:
            if self._confirmed.get(channel) is confirmed:
                del self._confirmed[channel]

    async def leave(self, room: str) -> None:
        if self._links.pop(room, None) is None:
            return
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.unsubscribe(self._channel(room))

    async def publish(self, message: BusMessage) -> None:
        try:
            await self._redis.publish(self._channel(message.room), encode(message))
        except (RedisError, OSError) as exc:
            self.metrics.publish_failures += 1
            log.warning("could not publish to room %s: %s", message.room, exc)
            return
        self.metrics.published += 1

    # --- the subscriber connection ---------------------------------------------------------------

    async def _read_forever(self) -> None:
        failures = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.ping()  # connects; raises here if Redis is down
                channels = [self._channel(room) for room in self._links]
                if channels:
                    await pubsub.subscribe(*channels)
                self._pubsub = pubsub
                if failures:
                    self.metrics.reconnects += 1
                    log.info("bus reconnected after %d failed tries; resyncing rooms", failures)
                    self._resync_all()
                failures = 0
                await self._read(pubsub)
            except (RedisError, OSError) as exc:
                self._pubsub = None
                failures += 1
                if failures == 1:
                    log.warning("bus connection lost (%s); reconnecting", exc)
                await asyncio.sleep(_backoff(failures, cap=self._reconnect_cap_s))
            finally:
                self._pubsub = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2

    async def _read(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=_POLL_S)
            if message is None:
                continue
            channel = _text(message["channel"])
            kind = message["type"]
            if kind == "subscribe":
                confirmed = self._confirmed.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            elif kind == "message":
                await self._dispatch(channel, message["data"])

    async def _dispatch(self, channel: str, data: bytes) -> None:
        room = channel.removeprefix(self._prefix)
        link = self._links.get(room)
        try:
            message = decode(room, data)
        except InvalidInput:
            self.metrics.dropped += 1
            return
        if message.origin == self.worker_id:
            return
        if link is None:
            self.metrics.dropped += 1
            return
        self.metrics.received += 1
        self.metrics.lag_seconds.observe(max(0.0, time.time() - message.sent_at))
        try:
            await link.received(message)
        except Exception:
            # One bad message or room must not stop every room's fan-out.
            log.exception("room %s could not take a bus message", room)

    def _resync_all(self) -> None:
        for link in list(self._links.values()):
            task = asyncio.create_task(_resync(link, again_after_s=self._resync_again_s))
            self._resyncs.add(task)
            task.add_done_callback(self._resyncs.discard)


async def _resync(link: RoomLink, *, again_after_s: float) -> None:
    # Twice: the other workers reconnect at their own times, and a resync request or an
    # update sent before one of them subscribed again is lost to it. The second round, when
    # every worker is back, trades whatever the first could not.
    for delay in (0.0, again_after_s):
        await asyncio.sleep(delay)
        try:
            await link.resync()
        except Exception:
            log.exception("a room could not resync after the bus reconnected")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _backoff(failures: int, *, cap: float) -> float:
    ceiling = min(cap, 0.05 * 2 ** min(failures, 10))
    return random.uniform(ceiling / 2, ceiling)
