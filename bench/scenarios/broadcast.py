"""``broadcast``: one writer, N observers in one room (the y/hub shape: 1 writer to 1,000+).

Every observer times every update by its ordinal (the n-th update it receives is the
writer's n-th edit) without decoding it; ``--sample`` of them also apply each update into a
pycrdt Doc and time the edit when the document shows it, which checks the ordinals (an
update out of turn would show up as a missing or unexpected one). Applying into 1,000 Docs
would make the load generator, sharing the machine, the bottleneck.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from bench.clients import CountingObserver, DocObserver, Editor, Ordinal, Peer
from bench.diagrams import chain_diagram
from bench.edits import EditingDoc, Ledger, find_targets
from bench.run import Run
from bench.scenarios.setup import bounded, create_rooms, open_room
from bench.target import SetupFailed


async def broadcast(run: Run) -> None:
    config = run.config
    xml = chain_diagram(config.tasks)
    run.details["diagram"] = {"tasks": config.tasks, "xml_bytes": len(xml)}
    run.latency_meaning = (
        "fan-out: writer sends -> each observer receives the update (matched by ordinal, "
        "all observers); applied_latency_ms: -> a sampled observer's pycrdt Doc shows it"
    )
    run.notes.append(
        f"{config.sample} of {config.clients} observers apply updates into a pycrdt Doc; "
        "all count messages and bytes and time arrivals"
    )
    (diagram_id,) = await create_rooms(run, 1, xml)
    run.planned = config.clients + 1
    ledger = Ledger()
    applied = run.recorder("applied_latency_ms")
    ordinals: list[Ordinal] = []

    async def observer(index: int) -> Peer | None:
        joined = await open_room(run, diagram_id, f"bench-observer-{index}")
        if joined is None:
            return None
        ordinal = Ordinal(ledger, run.latency, run.errors)
        ordinals.append(ordinal)
        if index < config.sample:
            return DocObserver(
                joined[0],
                joined[1],
                room=0,
                ledger=ledger,
                latency=applied,
                traffic=run.traffic,
                errors=run.errors,
                ordinal=ordinal,
            )
        return CountingObserver(joined[0], ordinal=ordinal, traffic=run.traffic, errors=run.errors)

    observers = [
        run.add_peer(p)
        for p in await bounded(run, [partial(observer, i) for i in range(config.clients)])
        if p is not None
    ]
    joined = await open_room(run, diagram_id, "bench-writer")
    if joined is None:
        raise SetupFailed("writer_join_failed", "the writer could not join the room")
    doc = EditingDoc(joined[1])
    targets = find_targets(doc.doc)
    if not targets:
        raise SetupFailed("no_tasks", "the diagram has no task with a shape to edit")
    writer = run.add_peer(
        Editor(
            joined[0],
            doc,
            room=0,
            editor=0,
            targets=targets,
            ledger=ledger,
            lag=run.recorder("send_lag_ms"),
            traffic=run.traffic,
            errors=run.errors,
        )
    )
    docs = [o for o in observers if isinstance(o, DocObserver)]
    async with asyncio.TaskGroup() as group:
        for peer in [*observers, writer]:
            group.create_task(peer.run())
        async with run.measuring():
            start = time.monotonic()
            await writer.edit_until(start, start + config.duration_s, config.rate_hz)

        def missed() -> int:
            return sum(max(0, len(ledger.sent_ns) - o.seen) for o in ordinals)

        await run.settle(lambda: missed() == 0)
        if count := missed():
            run.errors.add("missed_update", count=count)
        if unobserved := sum(max(0, len(ledger.sent_ns) - o.seen) for o in docs):
            run.errors.add("unobserved_edit", count=unobserved)
        run.details["edits_sent"] = len(ledger.sent_ns)
        run.details["doc_observers"] = len(docs)
        await run.close_peers()
