"""Set-up shared by the scenarios: rooms holding a diagram (over REST on ours, seeded by the
driver on a peer: :mod:`bench.target`), clients joined as the server wants (our real token
flow), at most ``connect_concurrency`` at a time (a join storm is what the ``join`` scenario
measures; the others must not start with one by accident)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from websockets.exceptions import WebSocketException

from bench.clients import Link, failure_kind
from bench.run import Run
from core.errors import CollabError

T = TypeVar("T")
JOIN_TIMEOUT_S = 60.0

# What a join can fail with; anything else is a bug in the benchmark and should surface.
JOIN_FAILURES = (CollabError, OSError, TimeoutError, WebSocketException)


async def bounded(run: Run, jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run ``jobs`` at most ``connect_concurrency`` at a time, in order of the list."""
    gate = asyncio.Semaphore(run.config.connect_concurrency)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


async def create_rooms(run: Run, count: int, xml: bytes) -> list[str]:
    """``count`` rooms holding ``xml`` (their ids)."""
    return await run.target.create_rooms(count, xml)


async def open_room(run: Run, room: str, user: str) -> tuple[Link, bytes] | None:
    """A synced connection for ``user`` (room token fetched first on ours; the room seeded
    first on a peer), or None, counted."""
    try:
        async with asyncio.timeout(JOIN_TIMEOUT_S):
            return await run.target.open_room(room, user, run.traffic)
    except JOIN_FAILURES as exc:
        run.errors.add(failure_kind(exc), repr(exc))
        return None
