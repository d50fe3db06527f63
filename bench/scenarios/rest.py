"""``rest``: N people using the diagrams REST API (list, get, save with think times) in one
org's diagrams, beside a ``rooms`` WebSocket load in the same run.

Each user has its own token and follows :class:`~bench.workflow.Workflow`; every request goes
through one pooled ``httpx.AsyncClient``. ``latency_ms`` is REST latency (every request,
whatever its status); ``rest_<op>_ms`` splits it by operation; ``request_lag_ms`` is how late
requests started against their schedule (the previous reply plus the think time), so a load
generator falling behind shows. The WebSocket load is the ``rooms`` scenario itself, run
against a view of this run (:class:`_RoomsLoad`): its fan-out latency is ``ws_fanout_ms``,
its send lag ``ws_send_lag_ms``, its errors count with a ``ws_`` prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final

import httpx

from bench.diagrams import chain_diagram
from bench.run import Run
from bench.scenarios.rooms import rooms
from bench.scenarios.setup import bounded
from bench.tally import Tally
from bench.target import check_loopback
from bench.workflow import OPERATIONS, Call, Habits, Outcome, Reply, Workflow, diagram_title

# Connections of the pooled client: 1,000 people would bring 1,000 browsers, but a pool this
# size is never the limit at a few hundred requests per second (waiting for one would show
# as latency), and httpcore scans its pool on every request.
_POOL: Final = 100
_TIMEOUT_S: Final = 30.0


async def rest(run: Run) -> None:
    config = run.config
    run.latency_meaning = (
        "REST: request sent -> response read in full, every request of every user (list, "
        "get, summary, xml, save; any status); rest_<op>_ms per operation"
    )
    xml = chain_diagram(config.tasks)
    ids = await _create_diagrams(run, config.diagrams, xml)
    run.details["diagram"] = {"tasks": config.tasks, "xml_bytes": len(xml)}
    habits = Habits(think_s=config.think_s)
    tallies = Tallies()
    users = [
        _User(
            Workflow(
                f"bench-user-{i}",
                run.tokens.for_user(f"bench-user-{i}"),
                ids,
                habits,
                random.Random(f"{run.id}-{i}"),
            ),
            run,
            tallies,
        )
        for i in range(config.clients)
    ]
    if not run.tokens.distinct_users:
        run.notes.append("one token for every user (--token): they share one write limit")
    load = _RoomsLoad(run) if config.ws_editors else None
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(_client(run.api.base_url))
        if load is not None:
            await stack.enter_async_context(load.running())
        async with run.measuring():
            start = time.monotonic()
            stop = start + config.duration_s
            await asyncio.gather(*(user.run(start, stop, http) for user in users))
            elapsed = time.monotonic() - start
    run.details["rest"] = tallies.summary(users, elapsed, habits)
    run.details["ws"] = load.summary() if load is not None else {"editors": 0}


async def _create_diagrams(run: Run, count: int, xml: bytes) -> list[str]:
    """``count`` diagrams with searchable titles, each by its own owner (the write limit is
    per user: set-up must not be what it measures)."""

    async def create(index: int) -> str:
        token = run.tokens.for_user(f"bench-owner-{index}")
        title = diagram_title(index, f"bench {run.id}")
        return str((await run.api.create_diagram(token, title, xml))["id"])

    return await bounded(run, [partial(create, i) for i in range(count)])


@contextlib.asynccontextmanager
async def _client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy from the environment must not see (or reroute) loopback calls.
    async with httpx.AsyncClient(
        base_url=check_loopback(base_url),
        timeout=_TIMEOUT_S,
        trust_env=False,
        limits=httpx.Limits(max_connections=_POOL, max_keepalive_connections=_POOL),
    ) as client:
        yield client


@dataclass(slots=True)
class Tallies:
    """Requests by operation and status (or exception), and their outcomes."""

    statuses: dict[str, Counter[str]] = field(
        default_factory=lambda: {op: Counter() for op in OPERATIONS}
    )
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, call: Call, status: int | str) -> Outcome:
        """Count one request: its status, or the name of the exception it failed with."""
        outcome: Outcome = call.outcome(status) if isinstance(status, int) else "error"
        self.statuses[call.op][str(status)] += 1
        self.outcomes[outcome] += 1
        return outcome

    def summary(self, users: list[_User], elapsed_s: float, habits: Habits) -> dict[str, Any]:
        requests = sum(self.outcomes.values())
        counts: Counter[str] = Counter()
        for user in users:
            counts.update(user.workflow.counts)
        errors = self.outcomes["error"]
        return {
            "users": len(users),
            "think_mean_s": habits.think_s,
            "requests": requests,
            "seconds": round(elapsed_s, 3),
            "requests_per_s": round(requests / elapsed_s, 1) if elapsed_s > 0 else None,
            "outcomes": dict(sorted(self.outcomes.items())),
            "error_count": errors,
            "error_rate": round(errors / requests, 6) if requests else None,
            "by_operation": {
                op: {"count": sum(found.values()), "statuses": dict(sorted(found.items()))}
                for op, found in self.statuses.items()
            },
            "saves": {name: counts[name] for name in _SAVE_COUNTS},
        }


_SAVE_COUNTS: Final = (
    "saves",
    "saved",
    "conflict_retries",
    "rate_limit_waits",
    "saves_given_up",
    "nothing_to_rename",
)


class _User:
    """Pumps one workflow: sleeps its think times, sends its calls, feeds back the replies."""

    __slots__ = ("bench_run", "lag", "latency", "tallies", "workflow")

    def __init__(self, workflow: Workflow, run: Run, tallies: Tallies) -> None:
        self.workflow = workflow
        self.bench_run = run
        self.tallies = tallies
        self.lag = run.recorder("request_lag_ms")
        self.latency = {op: run.recorder(f"rest_{op}_ms") for op in OPERATIONS}

    async def run(self, start: float, stop: float, http: httpx.AsyncClient) -> None:
        """Visit after visit until the next request would start at ``stop`` or later."""
        last = start  # think times count from the previous reply: people wait for the page
        while True:
            visit = self.workflow.visit()
            try:
                call = next(visit)
                while True:
                    due = last + call.think_s
                    if due >= stop:
                        visit.close()
                        return
                    if (delay := due - time.monotonic()) > 0:
                        await asyncio.sleep(delay)
                    reply = await self._send(http, call, due)
                    last = time.monotonic()
                    call = visit.send(reply)
            except StopIteration:
                continue

    async def _send(self, http: httpx.AsyncClient, call: Call, due: float) -> Reply:
        sent = time.monotonic()
        self.lag.add((sent - due) * 1000)
        try:
            answer = await http.request(
                call.method, call.path, params=call.params, headers=call.headers, content=call.body
            )
        except httpx.HTTPError as exc:
            kind = type(exc).__name__
            self.tallies.add(call, kind)
            self.bench_run.errors.add(f"http_{kind}", f"{call.method} {call.path}: {exc!r}")
            return Reply(0)
        elapsed_ms = (time.monotonic() - sent) * 1000
        self.bench_run.latency.add(elapsed_ms)
        self.latency[call.op].add(elapsed_ms)
        if self.tallies.add(call, answer.status_code) == "error":
            self.bench_run.errors.add(
                f"http_{answer.status_code}",
                f"{call.method} {call.path}: {answer.text[:200]}",
            )
        return Reply(answer.status_code, answer.content, answer.headers.get("retry-after"))


class _Prefixed(Tally):
    """A tally that also counts every error, with a prefix, in another (the run's)."""

    def __init__(self, into: Tally, prefix: str) -> None:
        super().__init__()
        self._into = into
        self._prefix = prefix

    def add(self, kind: str, example: str = "", count: int = 1) -> None:
        super().add(kind, example, count)
        self._into.add(f"{self._prefix}{kind}", example, count)


class _RoomsLoad(Run):
    """The ``rooms`` scenario's view of a rest run: its own org, config and peers, but the
    run's counters (fan-out latency and send lag under ``ws_`` names, errors prefixed
    ``ws_``, traffic shared so the progress line counts its connections).

    Its :meth:`measuring` does not measure: it tells :meth:`running` that the rooms are
    joined and editing has begun, so the REST users start in the same second.
    """

    def __init__(self, main: Run) -> None:
        config = main.config
        super().__init__(
            replace(
                config,
                scenario="rooms",
                clients=config.ws_editors,
                rooms=config.ws_rooms,
                rate_hz=config.ws_rate_hz,
                sample=0,
                server_pids=tuple(main.server.pids) or config.server_pids,
                progress=False,
            ),
            main.api,
        )
        self.main = main
        self.latency = main.recorder("ws_fanout_ms")
        self.recorders = {"send_lag_ms": main.recorder("ws_send_lag_ms")}
        self.traffic = main.traffic
        self.errors = _Prefixed(main.errors, "ws_")
        self._editing = asyncio.Event()

    @contextlib.asynccontextmanager
    async def measuring(self) -> AsyncIterator[None]:
        self._editing.set()
        yield

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the rooms scenario in a task; enter once its editors edit, leave when it has
        drained and closed its peers."""
        task = asyncio.create_task(rooms(self))
        editing = asyncio.create_task(self._editing.wait())
        try:
            await asyncio.wait({task, editing}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # set-up failed: raise its error
            self.main.planned += self.planned
            yield
            await task
        finally:
            for pending in (task, editing):
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending
            await self.close_peers()

    def summary(self) -> dict[str, Any]:
        return {
            "editors": self.config.clients,
            "rooms": self.config.rooms,
            "rate_hz": self.config.rate_hz,
            "latency_meaning": self.latency_meaning,
            "errors": dict(sorted(self.errors.counts.items())),
            **self.details,
            "notes": self.notes,
        }
