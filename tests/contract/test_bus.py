"""The ``Bus`` contract on both adapters (in-process hub, Redis pub/sub), and its codec."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import redis.asyncio

from core.errors import InvalidInput
from server.bus import Bus, BusMessage, InProcessBus, InProcessHub, Kind, decode, encode
from server.redis_bus import RedisBus
from tests.fixtures.redis_server import redis_server


class Inbox:
    def __init__(self) -> None:
        self.messages: asyncio.Queue[BusMessage] = asyncio.Queue()
        self.resyncs = 0

    async def received(self, message: BusMessage) -> None:
        await self.messages.put(message)

    async def resync(self) -> None:
        self.resyncs += 1

    async def next(self) -> BusMessage:
        async with asyncio.timeout(5):
            return await self.messages.get()


@pytest.fixture(params=["in-process", pytest.param("redis", marks=pytest.mark.redis)])
def redis_for_bus(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@pytest.fixture
async def two_buses(redis_for_bus: str | None) -> AsyncIterator[tuple[Bus, Bus]]:
    async with AsyncExitStack() as stack:
        if redis_for_bus is None:
            hub = InProcessHub()
            one: Bus = await stack.enter_async_context(InProcessBus(hub))
            two: Bus = await stack.enter_async_context(InProcessBus(hub))
        else:
            client = redis.asyncio.Redis.from_url(redis_for_bus)
            stack.push_async_callback(client.aclose)
            prefix = f"test-bus-{uuid.uuid4().hex[:8]}:"
            one = await stack.enter_async_context(RedisBus(client, prefix=prefix))
            two = await stack.enter_async_context(RedisBus(client, prefix=prefix))
            await asyncio.sleep(0.1)  # let both readers connect
        yield one, two


async def test_a_message_reaches_the_other_worker_in_the_room_only(
    two_buses: tuple[Bus, Bus],
) -> None:
    one, two = two_buses
    mine, theirs, elsewhere = Inbox(), Inbox(), Inbox()
    await one.join("org/d1/0", mine)
    await two.join("org/d1/0", theirs)
    await two.join("org/d2/0", elsewhere)

    await one.publish(BusMessage(Kind.UPDATE, "org/d1/0", one.worker_id, b"\x01\x02", "5-0"))

    got = await theirs.next()
    assert (got.kind, got.room, got.origin, got.payload, got.position) == (
        Kind.UPDATE, "org/d1/0", one.worker_id, b"\x01\x02", "5-0",
    )  # fmt: skip
    await asyncio.sleep(0.1)
    assert mine.messages.empty()  # a worker ignores its own messages
    assert elsewhere.messages.empty()
    assert two.metrics.received == 1 and one.metrics.published == 1


async def test_after_leaving_nothing_more_arrives(two_buses: tuple[Bus, Bus]) -> None:
    one, two = two_buses
    inbox = Inbox()
    await two.join("org/d/0", inbox)
    await two.leave("org/d/0")
    await one.publish(BusMessage(Kind.AWARENESS, "org/d/0", one.worker_id, b"x"))
    await asyncio.sleep(0.2)
    assert inbox.messages.empty()


@pytest.mark.redis
async def test_the_redis_bus_resubscribes_and_resyncs_after_redis_restarts(
    tmp_path: Path,
) -> None:
    async with redis_server(tmp_path / "redis") as server:
        client = redis.asyncio.Redis.from_url(server.url, socket_timeout=2)
        try:
            async with RedisBus(client) as one, RedisBus(client) as two:
                inbox = Inbox()
                await asyncio.sleep(0.1)
                await two.join("org/d/0", inbox)
                await server.stop()
                await one.publish(BusMessage(Kind.UPDATE, "org/d/0", one.worker_id, b"lost"))
                assert one.metrics.publish_failures == 1  # counted, never raised
                await server.start()

                async with asyncio.timeout(10):
                    while inbox.resyncs == 0:  # noqa: ASYNC110 - the resync is the event
                        await asyncio.sleep(0.05)
                assert two.metrics.reconnects >= 1
                await one.publish(BusMessage(Kind.UPDATE, "org/d/0", one.worker_id, b"back"))
                assert (await inbox.next()).payload == b"back"
        finally:
            await client.aclose()


def test_the_codec_round_trips_and_refuses_garbage() -> None:
    message = BusMessage(Kind.RESYNC, "o/d/1", "worker-1", b"\x00" * 3, None, 123.5)
    assert decode("o/d/1", encode(message)) == message
    with_position = BusMessage(Kind.UPDATE, "o/d/1", "w", b"u", "17-3", 1.0)
    assert decode("o/d/1", encode(with_position)) == with_position
    for garbage in (b"", b"\x01", b"\x09" + b"\x00" * 12, encode(message)[:-4] + b"\xff" * 0):
        if garbage == encode(message)[:-4]:
            continue
        with pytest.raises(InvalidInput):
            decode("o/d/1", garbage)
