"""The outbox processor: every event a store wrote is handled, at least once.

Each worker runs one. It claims a batch of due events (on Postgres several
workers claim side by side and never get the same event), hands each to the
handler for its type and marks it delivered. A failure is retried with
exponential backoff and jitter; an event that fails ``max_attempts`` claims in a
row, or whose data no retry can fix (``InvalidInput``: XML that no longer
parses, say), is parked for an operator and counted. A worker that dies
mid-event leaves it leased; the lease runs out and the event is handled again,
so handlers must be idempotent. Events of a type nobody handles are delivered
as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

from core.errors import CollabError, InvalidInput
from persistence.outbox import Outbox, OutboxBacklog, OutboxEvent
from persistence.ports import BlobStore, DiagramStore
from server.cpu_pool import CpuPool
from server.settings import Settings
from server.thumbnailer import Thumbnailer

log = logging.getLogger(__name__)

Handler = Callable[[OutboxEvent], Awaitable[None]]

# While claiming fails (the database is down), look again after the poll interval,
# doubling up to this, rather than logging a failure every poll.
_MAX_CLAIM_BACKOFF_S = 30.0
# How long shutdown waits for the event in hand before cancelling it (its lease
# then runs out and another processor, or the next start, handles it again).
_STOP_GRACE_S = 5.0


@dataclass
class OutboxMetrics:
    completed: int = 0
    retried: int = 0
    parked: int = 0
    claim_failures: int = 0
    # Marking an event failed: it comes back when its lease runs out.
    release_failures: int = 0


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before the claim after ``attempt`` (1 for the first failure).

    The step doubles per attempt up to ``max_s``; half of it is random ("equal
    jitter"), so events that failed together (one outage) spread out when they
    come back, and each still waits at least half its step.
    """
    step = min(max_s, base_s * 2.0 ** min(max(attempt, 1) - 1, 60))
    return step / 2 + rand() * step / 2


class OutboxProcessor:
    def __init__(
        self,
        outbox: Outbox,
        handlers: Mapping[str, Handler],
        *,
        poll_interval_s: float,
        batch_size: int,
        max_attempts: int,
        lease_s: float,
        backoff_base_s: float,
        backoff_max_s: float,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._outbox = outbox
        self._handlers = dict(handlers)
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._lease_s = lease_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._rand = rand
        self._stopping = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._loop: asyncio.Task[None] | None = None
        self.metrics = OutboxMetrics()

    async def __aenter__(self) -> Self:
        self._stopping.clear()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._loop = self._tasks.create_task(self._run(), name="outbox-processor")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._stopping.set()
        tasks, loop = self._tasks, self._loop
        self._tasks = self._loop = None
        if tasks is None or loop is None:
            return
        # The loop stops between events; the one in hand gets a short grace to finish.
        done, _ = await asyncio.wait({loop}, timeout=_STOP_GRACE_S)
        if not done:
            loop.cancel()
        await tasks.__aexit__(None, None, None)

    async def backlog(self) -> OutboxBacklog:
        return await self._outbox.backlog()

    # --- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        claim_failures = 0
        while not self._stopping.is_set():
            try:
                claimed = await self.run_once()
                claim_failures = 0
            except CollabError as exc:
                claim_failures += 1
                self.metrics.claim_failures += 1
                if claim_failures == 1:  # one line per outage, not one per poll
                    log.warning("outbox: cannot claim events: %s", exc.detail)
                claimed = 0
            except Exception:
                claim_failures += 1
                self.metrics.claim_failures += 1
                log.exception("outbox: claiming events failed")
                claimed = 0
            if claimed < self._batch_size:
                # Drained (or failing): wait before looking again; a full batch means
                # more may be due right now.
                delay = min(_MAX_CLAIM_BACKOFF_S, self._poll_interval_s * 2.0**claim_failures)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(delay, self._poll_interval_s)):
                        await self._stopping.wait()

    async def run_once(self) -> int:
        """Claim one batch and handle it; returns how many events were claimed.

        Raises what the claim raises; a handler's failure is the event's, never the caller's.
        """
        events = await self._outbox.claim(limit=self._batch_size, lease_s=self._lease_s)
        for index, event in enumerate(events):
            if self._stopping.is_set():
                # Hand the rest back now rather than leave them leased past the restart.
                for rest in events[index:]:
                    await self._release(
                        self._outbox.retry(rest, error="not handled: worker stopped", delay_s=0)
                    )
                break
            await self._handle(event)
        return len(events)

    async def _handle(self, event: OutboxEvent) -> None:
        handler = self._handlers.get(event.type)
        try:
            if handler is not None:
                await handler(event)
        except InvalidInput as exc:
            # The event or the data it names is unusable as it is: retrying cannot help.
            await self._park(event, f"{exc.code}: {exc.detail}")
            return
        except Exception as exc:
            error = f"{exc.code}: {exc.detail}" if isinstance(exc, CollabError) else repr(exc)
            if not isinstance(exc, CollabError):
                log.exception("outbox: %s event %d failed unexpectedly", event.type, event.id)
            if event.attempts >= self._max_attempts:
                await self._park(event, error)
                return
            delay_s = backoff_delay(
                event.attempts,
                base_s=self._backoff_base_s,
                max_s=self._backoff_max_s,
                rand=self._rand,
            )
            log.warning(
                "outbox: %s event %d of diagram %s failed (attempt %d of %d), retry in %.1f s: %s",
                event.type,
                event.id,
                event.diagram_id,
                event.attempts,
                self._max_attempts,
                delay_s,
                error,
            )
            if await self._release(self._outbox.retry(event, error=error, delay_s=delay_s)):
                self.metrics.retried += 1
            return
        if await self._release(self._outbox.complete(event)):
            self.metrics.completed += 1

    async def _park(self, event: OutboxEvent, error: str) -> None:
        log.error(
            "outbox: %s event %d of diagram %s parked after %d attempt(s): %s",
            event.type,
            event.id,
            event.diagram_id,
            event.attempts,
            error,
        )
        if await self._release(self._outbox.park(event, error=error)):
            self.metrics.parked += 1

    async def _release(self, outcome: Awaitable[None]) -> bool:
        """Record an event's outcome; when the outbox cannot, the lease brings it back."""
        try:
            await outcome
        except CollabError as exc:
            self.metrics.release_failures += 1
            log.warning("outbox: cannot record an event's outcome: %s", exc.detail)
            return False
        return True


# --- the processor this service runs ------------------------------------------------------------


@asynccontextmanager
async def open_outbox(
    settings: Settings,
    store: DiagramStore,
    blobs: BlobStore,
    *,
    on_thumbnail: Callable[[str], Awaitable[None]] | None = None,
    cpu: CpuPool | None = None,
) -> AsyncIterator[OutboxProcessor]:
    """The outbox of the settings' database, processed with the thumbnail handler.

    Enter it after the store has migrated. ``on_thumbnail(org_id)`` runs after a
    diagram of that organization got a new thumbnail (to drop cached listings).
    """
    async with _open_adapter(settings) as outbox:
        thumbnails = Thumbnailer(
            store,
            blobs,
            outbox,
            xml_limits=settings.limits.xml_limits(),
            on_changed=on_thumbnail,
            cpu=cpu,
        )
        config = settings.outbox
        async with OutboxProcessor(
            outbox,
            dict.fromkeys(Thumbnailer.EVENTS, thumbnails),
            poll_interval_s=config.poll_interval_s,
            batch_size=config.batch_size,
            max_attempts=config.max_attempts,
            lease_s=config.lease_s,
            backoff_base_s=config.backoff_base_s,
            backoff_max_s=config.backoff_max_s,
        ) as processor:
            yield processor


@asynccontextmanager
async def _open_adapter(settings: Settings) -> AsyncIterator[Outbox]:
    if settings.database.url is not None:
        from persistence.postgres_outbox import PostgresOutbox

        async with PostgresOutbox(settings.database.url, app_role=settings.database.rls_role) as pg:
            yield pg
        return
    from persistence.sqlite_outbox import SqliteOutbox

    async with SqliteOutbox(settings.sqlite_path) as sqlite:
        yield sqlite
