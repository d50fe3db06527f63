"""``rooms``: N editors over R rooms, each editing at a fixed rate; one observer per room
times every edit until its document shows it (the fan-out latency)."""

from __future__ import annotations

import asyncio
import math
import time
from functools import partial
from typing import Any

from pycrdt import Doc

from bench.clients import DocObserver, Editor
from bench.diagrams import chain_diagram
from bench.edits import EditingDoc, Ledger, Target, find_targets
from bench.run import Run
from bench.scenarios.setup import bounded, create_rooms, open_room
from bench.target import SetupFailed


async def rooms(run: Run) -> None:
    config = run.config
    per_room = math.ceil(config.clients / config.rooms)
    xml = chain_diagram(max(config.tasks, per_room))
    run.details["diagram"] = {"tasks": max(config.tasks, per_room), "xml_bytes": len(xml)}
    run.latency_meaning = (
        "fan-out: editor sends a rename or move -> the room's observer's pycrdt Doc shows it "
        "(time.monotonic_ns, one process)"
    )
    run.notes.append(
        "editors do not apply the others' updates (they count them); observers apply all"
    )
    diagram_ids = await create_rooms(run, config.rooms, xml)
    run.planned = config.clients + config.rooms
    ledger = Ledger()
    targets: dict[int, list[Target]] = {}

    async def observer(room: int) -> DocObserver | None:
        joined = await open_room(run, diagram_ids[room], f"bench-observer-{room}")
        if joined is None:
            return None
        peer = DocObserver(
            joined[0],
            joined[1],
            room=room,
            ledger=ledger,
            latency=run.latency,
            traffic=run.traffic,
            errors=run.errors,
        )
        if room not in targets:
            targets[room] = _targets(peer.doc)
        return peer

    async def editor(index: int) -> Editor | None:
        room, local = index % config.rooms, index // config.rooms
        joined = await open_room(run, diagram_ids[room], f"bench-editor-{index}")
        if joined is None:
            return None
        doc = EditingDoc(joined[1])
        if room not in targets:
            targets[room] = _targets(doc.doc)
        return Editor(
            joined[0],
            doc,
            room=room,
            editor=index,
            targets=[targets[room][local % len(targets[room])]],
            ledger=ledger,
            lag=run.recorder("send_lag_ms"),
            traffic=run.traffic,
            errors=run.errors,
        )

    observers = [
        run.add_peer(p)
        for p in await bounded(run, [partial(observer, r) for r in range(config.rooms)])
        if p is not None
    ]
    editors = [
        run.add_peer(p)
        for p in await bounded(run, [partial(editor, i) for i in range(config.clients)])
        if p is not None
    ]
    async with asyncio.TaskGroup() as group:
        for peer in [*observers, *editors]:
            group.create_task(peer.run())
        async with run.measuring():
            # Editors start spread evenly over one period, as independent people would.
            start = time.monotonic()
            stop = start + config.duration_s
            period = 1 / config.rate_hz
            await asyncio.gather(
                *(
                    e.edit_until(start + period * i / max(len(editors), 1), stop, config.rate_hz)
                    for i, e in enumerate(editors)
                )
            )

        def behind() -> int:
            return sum(max(0, ledger.sent_by_room.get(o.room, 0) - o.seen) for o in observers)

        await run.settle(lambda: behind() == 0)
        if missing := behind():
            run.errors.add("unobserved_edit", count=missing)
        run.details["observed_edits"] = sum(o.seen for o in observers)
        await run.close_peers()


def _targets(doc: Doc[Any]) -> list[Target]:
    found = find_targets(doc)
    if not found:
        raise SetupFailed("no_tasks", "the diagram has no task with a shape to edit")
    return found
