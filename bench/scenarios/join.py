"""``join``: N clients join a room holding a large diagram at the same moment; the time
from that moment to each one's full state (sync step 2) is its latency.

The room is opened once first, so the storm measures joins into a live room, not the one
conversion of XML into a document (ours) or the driver seeding the room (a peer), reported
apart as ``first_open_ms``. Room tokens (ours) are fetched before the storm: it is the
WebSocket join that storms, as when a server restarts and every browser reconnects. Time is
counted from the common start, so a client the load generator was slow to even start is slow
in the numbers too. Clients do not apply the state while the storm is on (200 pycrdt decodes
of a 600 KiB state would time the load generator); a sample applies it afterwards to check it
holds the whole diagram.
"""

from __future__ import annotations

import asyncio
import os
import time
from functools import partial
from pathlib import Path
from typing import Final

from bench.clients import Peer, Ticket, failure_kind, join
from bench.run import Run
from bench.scenarios.setup import JOIN_FAILURES, bounded, create_rooms, open_room
from bench.seed import element_count
from bench.target import SetupFailed

DEFAULT_CORPUS: Final = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "miwg"
_CHECKED: Final = 5  # joined states applied afterwards to check them


def largest_corpus_file() -> Path:
    corpus = Path(os.environ.get("BPMN_MIWG", DEFAULT_CORPUS))
    files = list(corpus.rglob("*.bpmn")) if corpus.is_dir() else []
    if not files:
        raise SetupFailed("no_corpus", f"no .bpmn file under {corpus}; pass --diagram")
    return max(files, key=lambda path: path.stat().st_size)


async def join_storm(run: Run) -> None:
    config = run.config
    path = config.diagram or largest_corpus_file()
    xml = path.read_bytes()
    run.latency_meaning = (
        "join: all clients start at one moment -> each has the full state (sync step 2)"
    )
    (diagram_id,) = await create_rooms(run, 1, xml)
    run.planned = config.clients + 1

    started = time.perf_counter()
    first = await open_room(run, diagram_id, "bench-first")
    if first is None:
        raise SetupFailed("first_open_failed", "the first client could not join the room")
    reference = element_count(first[1])
    run.details.update(
        diagram=str(path),
        xml_bytes=len(xml),
        state_bytes=len(first[1]),
        elements=reference,
        first_open_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    peers = [run.add_peer(Peer(first[0], run.traffic, run.errors))]

    async def grant(index: int) -> Ticket | None:
        try:
            return await run.target.ticket(diagram_id, f"bench-join-{index}")
        except JOIN_FAILURES as exc:
            run.errors.add(failure_kind(exc), repr(exc))
            return None

    grants = await bounded(run, [partial(grant, i) for i in range(config.clients)])
    states: list[bytes] = []
    start = 0.0
    async with asyncio.TaskGroup() as group:

        async def one(index: int, ticket: Ticket) -> None:
            try:
                link, state = await join(ticket, run.traffic, origin=config.origin)
            except JOIN_FAILURES as exc:
                run.errors.add(failure_kind(exc), repr(exc))
                return
            run.latency.add((time.perf_counter() - start) * 1000)
            if index < _CHECKED:
                states.append(state)
            group.create_task(run.add_peer(Peer(link, run.traffic, run.errors)).run())

        group.create_task(peers[0].run())
        waiting = [(i, g) for i, g in enumerate(grants) if g is not None]
        async with run.measuring():
            start = time.perf_counter()
            try:
                async with asyncio.timeout(config.duration_s):
                    await asyncio.gather(*(one(i, g) for i, g in waiting))
            except TimeoutError:
                run.errors.add("join_timeout", count=len(waiting) - len(run.latency.samples))
        storm_s = time.perf_counter() - start
        run.details["storm_s"] = round(storm_s, 3)
        run.details["joins_per_s"] = round(len(run.latency.samples) / max(storm_s, 1e-9), 1)
        for state in states:
            if element_count(state) != reference:
                run.errors.add("state_mismatch", "a joined state has another element count")
        run.details["states_checked"] = len(states)
        await run.close_peers()
