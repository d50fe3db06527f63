"""The ``UpdateLog`` contract, run against every adapter: SQLite file and Redis stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

from core.errors import UpdateLogUnavailable
from persistence.redis_update_log import RedisUpdateLog
from persistence.sqlite_update_log import SqliteUpdateLog
from persistence.update_log import UpdateLog, later, position_key, successor


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def redis_for_log(request: pytest.FixtureRequest) -> str | None:
    # Synchronous: an async fixture cannot pull in another one with getfixturevalue.
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@pytest.fixture
async def update_log(redis_for_log: str | None, tmp_path: Path) -> AsyncIterator[UpdateLog]:
    if redis_for_log is None:
        async with SqliteUpdateLog(tmp_path / "log.db") as sqlite_log:
            yield sqlite_log
        return
    client = redis.asyncio.Redis.from_url(redis_for_log, socket_timeout=5)
    prefix = f"test-log-{uuid.uuid4().hex[:8]}:"
    try:
        yield RedisUpdateLog(client, prefix=prefix)
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


def room() -> str:
    return f"org-a/{uuid.uuid4()}/0"


async def test_appended_updates_come_back_in_order(update_log: UpdateLog) -> None:
    key = room()
    positions = [await update_log.append(key, bytes([i, 1, 2])) for i in range(5)]

    entries = await update_log.read_after(key, None)

    assert [entry.update for entry in entries] == [bytes([i, 1, 2]) for i in range(5)]
    assert [entry.position for entry in entries] == positions
    keys = [position_key(p) for p in positions]
    assert keys == sorted(keys) and len(set(keys)) == 5


async def test_read_after_a_position_skips_what_it_includes(update_log: UpdateLog) -> None:
    key = room()
    positions = [await update_log.append(key, f"u{i}".encode()) for i in range(4)]

    after = await update_log.read_after(key, positions[1])

    assert [entry.update for entry in after] == [b"u2", b"u3"]
    assert await update_log.read_after(key, positions[-1]) == []


async def test_rooms_are_separate(update_log: UpdateLog) -> None:
    one, two = room(), room()
    await update_log.append(one, b"one")
    await update_log.append(two, b"two")

    assert [e.update for e in await update_log.read_after(one, None)] == [b"one"]
    assert [e.update for e in await update_log.read_after(two, None)] == [b"two"]
    assert {one, two} <= set(await update_log.rooms())


async def test_trim_drops_entries_up_to_and_including_the_position(
    update_log: UpdateLog,
) -> None:
    key, other = room(), room()
    positions = [await update_log.append(key, f"u{i}".encode()) for i in range(5)]
    await update_log.append(other, b"kept")

    await update_log.trim(key, positions[2])

    assert [e.update for e in await update_log.read_after(key, None)] == [b"u3", b"u4"]
    assert [e.update for e in await update_log.read_after(other, None)] == [b"kept"]
    await update_log.trim(key, positions[-1])
    assert await update_log.read_after(key, None) == []
    assert key not in await update_log.rooms()


async def test_positions_keep_growing_after_the_log_was_emptied(update_log: UpdateLog) -> None:
    key = room()
    first = await update_log.append(key, b"a")
    await update_log.trim(key, first)

    second = await update_log.append(key, b"b")

    assert position_key(second) > position_key(first)
    assert [e.update for e in await update_log.read_after(key, first)] == [b"b"]


async def test_concurrent_appends_all_land_with_distinct_positions(
    update_log: UpdateLog,
) -> None:
    key = room()
    updates = [f"u{i}".encode() for i in range(200)]

    positions = await asyncio.gather(*(update_log.append(key, u) for u in updates))

    entries = await update_log.read_after(key, None)
    assert sorted(e.update for e in entries) == sorted(updates)
    assert len(set(positions)) == len(updates)
    # Each append's position names its own entry.
    by_position = {e.position: e.update for e in entries}
    assert [by_position[p] for p in positions] == updates


async def test_a_long_log_reads_back_whole(update_log: UpdateLog) -> None:
    key = room()
    await asyncio.gather(*(update_log.append(key, i.to_bytes(4, "big")) for i in range(2500)))

    entries = await update_log.read_after(key, None)

    assert len(entries) == 2500
    assert len({e.position for e in entries}) == 2500


async def test_updates_are_binary_safe(update_log: UpdateLog) -> None:
    key = room()
    data = bytes(range(256)) * 40
    await update_log.append(key, data)
    assert [e.update for e in await update_log.read_after(key, None)] == [data]


async def test_ping_answers(update_log: UpdateLog) -> None:
    await update_log.ping()


async def test_a_sqlite_log_survives_reopening(tmp_path: Path) -> None:
    key = room()
    async with SqliteUpdateLog(tmp_path / "log.db") as first:
        position = await first.append(key, b"kept")
    async with SqliteUpdateLog(tmp_path / "log.db") as second:
        entries = await second.read_after(key, None)
        assert [(e.position, e.update) for e in entries] == [(position, b"kept")]


async def test_a_sqlite_log_that_cannot_open_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(UpdateLogUnavailable):
        async with SqliteUpdateLog(blocker / "log.db"):
            pass


@pytest.mark.redis
async def test_an_unreachable_redis_log_is_unavailable(
    unreachable_redis: redis.asyncio.Redis,
) -> None:
    log = RedisUpdateLog(unreachable_redis)
    with pytest.raises(UpdateLogUnavailable):
        await log.append(room(), b"x")
    with pytest.raises(UpdateLogUnavailable):
        await log.ping()


def test_positions_order_by_their_numbers_not_their_text() -> None:
    assert position_key("10-0") > position_key("9-5")
    assert later("9-5", "10-0") == "10-0"
    assert later(None, "1-0") == "1-0" and later("1-0", None) == "1-0"
    assert successor("7-3") == "7-4"
    with pytest.raises(Exception, match="not an update-log position"):
        position_key("7")
