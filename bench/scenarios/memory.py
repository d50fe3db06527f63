"""``memory``: what the server holds per idle connection and per open document.

Two measurements on one server, each a difference of its resident memory (the whole process
tree, :class:`bench.procstat.ProcSampler`) before and after, once it has settled:

1. idle connections: N clients join R small rooms, sync, and then do nothing;
   (RSS after - RSS before) / N, in KiB;
2. open documents: D rooms each holding a 1,000-element diagram (:data:`DOCUMENT_TASKS`),
   one client each; (RSS after - RSS before) / D, in MiB (the one client included).

Everything a first use costs is paid before the first baseline: every room is created first
(over REST on ours, whose thumbnails of them are drawn meanwhile), a warm-up room holding the
large diagram is opened (imports, pools, the background worker), and each small room gets
one client (a peer's room is seeded then; ours converts its XML then). Nothing is closed
between the measurements either, so memory freed by one cannot be reused by the next and
hide its cost: the second baseline is the first measurement's end.

"Settled" means at least ``--duration`` seconds (default 3) after the last join, and then
until the server's CPU has been quiet for a second (bounded by :data:`MAX_QUIET_WAIT_S`):
a server still drawing thumbnails or collecting garbage is not at rest.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from bench.clients import Link, Peer
from bench.diagrams import chain_diagram
from bench.run import Run
from bench.scenarios.setup import bounded, create_rooms, open_room
from bench.seed import seed_from_xml

# chain_diagram(500): 500 tasks, 499 sequence flows and their process, 1,000 BPMN elements
# (plus 999 shapes and edges in the drawing).
DOCUMENT_TASKS: Final = 500
TARGET_KIB_PER_CONNECTION: Final = 30.0  # issue 7
TARGET_MIB_PER_DOCUMENT: Final = 5.0
SAMPLE_EVERY_S: Final = 0.25
QUIET_WINDOW_S: Final = 1.0
QUIET_CPU_PERCENT: Final = 5.0  # of one core
MAX_QUIET_WAIT_S: Final = 30.0
FULL_CONNECTIONS: Final = 1000
FEW_CONNECTIONS: Final = 200  # below: the figure is mostly the server's own movement


@dataclass(frozen=True, slots=True)
class Footprint:
    """Memory before and after ``count`` things were added, in KiB."""

    baseline_kib: int
    after_kib: int
    count: int

    @property
    def delta_kib(self) -> int:
        return self.after_kib - self.baseline_kib

    @property
    def per_unit_kib(self) -> float | None:
        return self.delta_kib / self.count if self.count > 0 else None


def settled_kib(samples: Sequence[int]) -> int:
    """The resident memory a settle ended at: the median of its later half of samples, so
    one sample caught mid-collection (or mid-trim) does not become the figure."""
    if not samples:
        raise ValueError("no samples")
    later = samples[len(samples) // 2 :]
    return round(statistics.median(later))


def is_quiet(cpu: Sequence[tuple[float, float]], *, window_s: float, max_percent: float) -> bool:
    """Whether the CPU seconds in ``cpu`` ((monotonic time, CPU seconds used so far),
    oldest first) grew by at most ``max_percent`` of one core over the last ``window_s``."""
    if len(cpu) < 2:
        return False
    end_at, end_used = cpu[-1]
    for at, used in reversed(cpu[:-1]):
        if end_at - at >= window_s:
            return 100 * (end_used - used) / (end_at - at) <= max_percent
    return False


class _Settle:
    """Samples of the server's RSS and CPU while it settles, kept for the result."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._started = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self.unquiet: list[str] = []  # settles that hit MAX_QUIET_WAIT_S

    async def rss_kib(self, phase: str) -> int | None:
        """The settled RSS, or None when the server's processes could not be read."""
        server = self._run.server
        start = time.monotonic()
        cpu: list[tuple[float, float]] = [(start, server.cpu_seconds())]
        taken: list[int] = []
        # Polled: the server offers nothing to await; the wait is bounded.
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            now = time.monotonic()
            by_pid = server.rss_kib_by_pid()
            cpu.append((now, server.cpu_seconds()))
            if by_pid:
                taken.append(sum(by_pid.values()))
                self.samples.append(
                    {
                        "phase": phase,
                        "t": round(now - self._started, 2),
                        "rss_kib": taken[-1],
                        "by_pid": by_pid,
                    }
                )
            if now - start < self._run.config.duration_s:
                continue
            if is_quiet(cpu, window_s=QUIET_WINDOW_S, max_percent=QUIET_CPU_PERCENT):
                break
            if now - start >= self._run.config.duration_s + MAX_QUIET_WAIT_S:
                self.unquiet.append(phase)
                break
        return settled_kib(taken) if taken else None


@dataclass(frozen=True, slots=True)
class Growth:
    """One measurement: over all it added, and over its second half alone (the marginal
    cost, without whatever a server grows once on first load: a heap's young generation,
    a pool), which tells a one-time step from a cost per unit."""

    overall: Footprint
    marginal: Footprint | None  # None when there was no first half to settle after


async def memory(run: Run) -> None:
    config = run.config
    idle_xml = chain_diagram(config.tasks)
    document_xml = chain_diagram(DOCUMENT_TASKS)
    elements = seed_from_xml(document_xml).elements
    run.latency_meaning = "none: the memory scenario times nothing (see details.memory)"
    if os.getpid() in run.server.pids:
        run.notes.append("the server runs in the driver's process: its RSS holds the clients'")
    # Every room first, the warm-up room among them (the last of the large ones).
    idle_rooms = await create_rooms(run, config.rooms, idle_xml)
    document_rooms = await create_rooms(run, config.documents + 1, document_xml)
    *document_rooms, warmup_room = document_rooms
    run.planned = config.clients + config.rooms + config.documents + 1
    settle = _Settle(run)
    figures: dict[str, Any] = {"settle_s": config.duration_s, "samples": settle.samples}
    run.details["memory"] = figures

    async with asyncio.TaskGroup() as group:

        def keep(joined: tuple[Link, bytes] | None) -> bool:
            if joined is None:
                return False
            group.create_task(run.add_peer(Peer(joined[0], run.traffic, run.errors)).run())
            return True

        async def join(rooms: list[str], start: int, stop: int, user: str) -> int:
            jobs: list[Callable[[], Awaitable[tuple[Link, bytes] | None]]] = [
                partial(open_room, run, rooms[index % len(rooms)], f"bench-{user}-{index}")
                for index in range(start, stop)
            ]
            return sum(keep(joined) for joined in await bounded(run, jobs))

        async def open_documents(start: int, stop: int) -> int:
            # Opening a document allocates far more than it keeps (XML -> CRDT on ours, the
            # seed's update on a peer): 50 at once would leave a high-water mark of 50
            # conversions in the RSS, one at a time leaves about one.
            opened = 0
            for index in range(start, stop):
                room = document_rooms[index]
                opened += keep(await open_room(run, room, f"bench-document-{index}"))
            return opened

        warm = await join([warmup_room], 0, 1, "warmup")
        warm += await join(idle_rooms, 0, len(idle_rooms), "anchor")
        figures["warmup"] = {
            "connections": warm,
            "what": f"one room of {elements} elements and one client in each of the "
            f"{len(idle_rooms)} idle rooms, before any baseline",
        }
        async with run.measuring():
            baseline = await settle.rss_kib("idle_baseline")
            idle = await _grow(
                settle, "idle", baseline, config.clients, partial(join, idle_rooms, user="idle")
            )
            if idle is not None:
                figures["idle"] = _idle_figures(idle, planned=config.clients, rooms=config.rooms)
            if config.documents and idle is not None:
                documents = await _grow(
                    settle, "documents", idle.overall.after_kib, config.documents, open_documents
                )
                if documents is not None:
                    figures["documents"] = _document_figures(
                        documents,
                        planned=config.documents,
                        elements=elements,
                        xml_bytes=len(document_xml),
                    )
        if settle.unquiet:
            run.notes.append(
                f"the server's CPU did not go quiet within {MAX_QUIET_WAIT_S:.0f} s of "
                f"settling ({', '.join(settle.unquiet)}): those figures may still move"
            )
        if idle is None:
            run.errors.add("no_rss", "the server's processes could not be read from /proc")
        elif config.clients < FEW_CONNECTIONS:
            run.notes.append(
                f"{config.clients} idle connections are too few for a per-connection figure: "
                "a server's memory moves by a few MiB on its own (a collection, a trim, a heap "
                f"growing); use {FULL_CONNECTIONS:,}"
            )
        await run.close_peers()


async def _grow(
    settle: _Settle,
    phase: str,
    baseline: int | None,
    total: int,
    add: Callable[[int, int], Awaitable[int]],
) -> Growth | None:
    """Add ``total`` things (``add(start, stop)`` adds some, returns how many it could) in
    two halves, settling after each; None when the RSS could not be read."""
    half = total // 2
    first = await add(0, half) if half else 0
    middle = await settle.rss_kib(f"{phase}_half") if half else None
    second = await add(half, total)
    after = await settle.rss_kib(f"{phase}_after")
    if baseline is None or after is None:
        return None
    marginal = None if middle is None else Footprint(middle, after, second)
    return Growth(Footprint(baseline, after, first + second), marginal)


def _idle_figures(growth: Growth, *, planned: int, rooms: int) -> dict[str, Any]:
    overall, marginal = growth.overall, growth.marginal
    per = overall.per_unit_kib
    per_marginal = None if marginal is None else marginal.per_unit_kib
    return {
        "connections": overall.count,
        "planned": planned,
        "rooms": rooms,
        "baseline_kib": overall.baseline_kib,
        "half_kib": None if marginal is None else marginal.baseline_kib,
        "after_kib": overall.after_kib,
        "delta_kib": overall.delta_kib,
        "per_connection_kib": _round(per, 1),
        "marginal_per_connection_kib": _round(per_marginal, 1),
        "target_kib": TARGET_KIB_PER_CONNECTION,
        "met": None if per is None else per <= TARGET_KIB_PER_CONNECTION,
    }


def _document_figures(
    growth: Growth, *, planned: int, elements: int, xml_bytes: int
) -> dict[str, Any]:
    overall, marginal = growth.overall, growth.marginal
    per = _mib(overall.per_unit_kib)
    return {
        "documents": overall.count,
        "planned": planned,
        "elements_per_document": elements,
        "xml_bytes": xml_bytes,
        "baseline_kib": overall.baseline_kib,
        "half_kib": None if marginal is None else marginal.baseline_kib,
        "after_kib": overall.after_kib,
        "delta_kib": overall.delta_kib,
        "per_document_mib": _round(per, 2),
        "marginal_per_document_mib": _round(
            _mib(None if marginal is None else marginal.per_unit_kib), 2
        ),
        "includes": "the document's one client",
        "target_mib": TARGET_MIB_PER_DOCUMENT,
        "met": None if per is None else per <= TARGET_MIB_PER_DOCUMENT,
    }


def _mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
