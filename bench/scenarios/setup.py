"""Set-up shared by the scenarios: diagrams created over REST, clients joined through the
real token flow, at most ``connect_concurrency`` at a time (a join storm is what the
``join`` scenario measures; the others must not start with one by accident)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from bench.clients import failure_kind, join
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


async def create_diagrams(run: Run, count: int, xml: bytes) -> list[str]:
    """``count`` diagrams of ``xml``, each created by its own user when tokens are minted
    (so the per-user write limit of the server is not what the set-up measures)."""

    async def create(index: int) -> str:
        token = run.tokens.for_user(f"bench-owner-{index}")
        body = await run.api.create_diagram(token, f"bench {run.id} room {index}", xml)
        return str(body["id"])

    return await bounded(run, [partial(create, i) for i in range(count)])


async def open_room(run: Run, diagram_id: str, user: str) -> tuple[ClientConnection, bytes] | None:
    """A synced connection for ``user`` (room token fetched first), or None, counted."""
    try:
        url, room_token = await run.api.grant(run.tokens.for_user(user), diagram_id)
        async with asyncio.timeout(JOIN_TIMEOUT_S):
            return await join(url, room_token, run.traffic, origin=run.config.origin)
    except JOIN_FAILURES as exc:
        run.errors.add(failure_kind(exc), repr(exc))
        return None
