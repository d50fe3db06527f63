"""Clients: outbox and writer, backpressure, rate limits, closing; limits and close codes."""

from __future__ import annotations

import asyncio

import pytest
from pycrdt import Map

from core.errors import DiagramNotFound, PermissionDenied, StoreUnavailable, XmlTooLarge
from rooms.client import Client, CloseCode, close_code_for
from rooms.limits import Limits, Metrics, RoomFull, TokenBucket
from rooms.protocol import (
    AwarenessEntry,
    AwarenessMessage,
    MalformedMessage,
    QueryAwareness,
    encode_awareness,
    encode_message,
)
from rooms.room import Room
from rooms.transport import MemoryTransport
from tests.fixtures.clock import FakeClock
from tests.test_rooms_support import Peer, converged, loaded_doc, task


async def test_the_writer_sends_in_order_and_close_is_idempotent() -> None:
    transport = MemoryTransport()
    metrics = Metrics()
    async with Client(transport, user_id="u", role="editor", metrics=metrics) as client:
        assert client.offer(b"1")
        assert client.offer(b"2")
        assert await transport.receive() == b"1"
        assert await transport.receive() == b"2"
        client.close(4400, "bad")
        client.close(1011, "ignored")
        assert not client.offer(b"3")
        async with asyncio.timeout(5):
            assert await transport.wait_closed() == (4400, "bad")
    assert transport.drain() == []
    assert metrics.clients_closed == {4400: 1}
    assert metrics.messages_out == 2


async def test_leaving_the_context_closes_normally() -> None:
    transport = MemoryTransport()
    async with Client(transport, user_id="u", role="viewer") as client:
        assert not client.can_edit
    assert client.close_code == 1000
    assert transport.close_code == 1000


async def test_a_full_outbox_closes_the_client_with_1013_even_while_a_send_hangs() -> None:
    transport = MemoryTransport()
    transport.pause()  # the peer stopped reading: the writer hangs in send()
    limits = Limits(outbox_size=3)
    async with Client(transport, user_id="u", role="editor", limits=limits) as client:
        offered = [client.offer(bytes([i])) for i in range(10)]
        # The writer has not run yet (nothing awaited): three queued, then full.
        assert offered == [True] * 3 + [False] * 7
        async with asyncio.timeout(5):
            code, reason = await transport.wait_closed()
        assert code == 1013
        assert "behind" in reason


async def test_a_slow_client_is_closed_while_the_others_keep_receiving() -> None:
    limits = Limits(outbox_size=4)
    metrics = Metrics()
    async with Room("d", loaded_doc("a"), limits=limits, metrics=metrics) as room:
        slow, fast, author = Peer("slow"), Peer("fast"), Peer("author")
        async with slow.join(room), fast.join(room), author.join(room):
            await fast.sync()
            await author.sync()
            slow.transport.pause()
            for index in range(20):
                await author.edit(
                    lambda doc, index=index: doc.get("elements", type=Map).__setitem__(
                        f"n{index}", task(f"N{index}")
                    )
                )
                # The fast client keeps up (and lets its writer run, as a socket read would).
                await fast.wait_for(lambda index=index: f"n{index}" in fast.elements)
            assert (await slow.closed())[0] == 1013
            await converged(room, fast)
            assert metrics.clients_closed[1013] == 1


async def test_a_failed_send_marks_the_connection_lost_without_closing_it() -> None:
    class Broken(MemoryTransport):
        async def send(self, data: bytes) -> None:
            raise ConnectionResetError("gone")

    transport = Broken()
    metrics = Metrics()
    async with Client(transport, user_id="u", role="editor", metrics=metrics) as client:
        client.offer(b"x")
        async with asyncio.timeout(5):
            await client.wait_closed()
    assert client.close_code == CloseCode.LOST
    assert transport.close_code is None  # nothing to tell a peer that is gone
    assert metrics.clients_closed == {1006: 1}


async def test_a_hanging_close_is_abandoned_after_the_timeout() -> None:
    class Hanging(MemoryTransport):
        async def close(self, code: int, reason: str) -> None:
            await asyncio.Event().wait()

    limits = Limits(close_timeout_s=0.01)
    async with asyncio.timeout(5):
        async with Client(Hanging(), user_id="u", role="editor", limits=limits) as client:
            client.close(4400, "bad")


async def test_long_reasons_are_cut_to_what_a_close_frame_carries() -> None:
    async with Client(MemoryTransport(), user_id="u", role="editor") as client:
        client.close(4400, "é" * 200)
        assert len(client.close_reason.encode()) <= 123


def _awareness_of_size(size: int) -> bytes:
    """A valid awareness message of exactly ``size`` bytes."""
    state = '"' + "x" * (size - 10) + '"'
    data = encode_message(AwarenessMessage(encode_awareness([AwarenessEntry(1, 1, state)])))
    assert len(data) == size
    return data


@pytest.mark.parametrize(
    ("limits", "message", "burst"),
    [
        (Limits(messages_per_s=10, message_burst=5), encode_message(QueryAwareness()), 5),
        (
            Limits(bytes_per_s=100, byte_burst=1000, max_message_bytes=400),
            _awareness_of_size(400),
            2,
        ),
    ],
)
async def test_a_client_over_its_rate_is_closed_with_1013(
    limits: Limits, message: bytes, burst: int
) -> None:
    clock = FakeClock()
    async with Room("d", loaded_doc("a"), limits=limits, clock=clock) as room:
        transport = MemoryTransport()
        async with Client(
            transport, user_id="u", role="editor", limits=limits, clock=clock
        ) as client:
            await room.join(client)
            for _ in range(burst):
                await room.receive(client, message)
            assert not client.closed
            clock.advance(10)  # the buckets refill
            for _ in range(burst):
                await room.receive(client, message)
            assert not client.closed
            clock.advance(0.05)  # not enough to earn a message (or 400 bytes) back
            await room.receive(client, message)
            assert client.close_code == 1013
            assert "slow down" in client.close_reason


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.advance(1)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.advance(100)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_message_bytes": 0},
        {"outbox_size": -1},
        {"awareness_coalesce_s": float("nan")},
        {"message_burst": 0.5},
        {"byte_burst": 10, "max_message_bytes": 100},
    ],
)
def test_limits_refuse_values_that_cannot_work(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        Limits(**kwargs)


def test_defaults_are_the_documented_ones() -> None:
    limits = Limits()
    assert limits.max_message_bytes == 1024 * 1024
    assert limits.awareness_coalesce_s == 0.05
    assert limits.awareness_timeout_s == 30


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MalformedMessage("x"), 4400),
        (XmlTooLarge(size=2, limit=1), 1009),
        (DiagramNotFound("d"), 4404),
        (PermissionDenied("no"), 4403),
        (StoreUnavailable("down"), 1013),
        (RoomFull("d", 3), 1013),
        (ValueError("bug"), 1011),
    ],
)
def test_close_codes_for_errors(error: Exception, code: int) -> None:
    assert close_code_for(error) == code
