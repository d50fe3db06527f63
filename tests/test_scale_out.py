"""Several worker processes serve the same rooms through Redis, and lose nothing.

Each worker is a real ``python -m server serve`` process sharing one Postgres database
and one Redis, as two replicas behind a load balancer would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from rooms.protocol import (
    AwarenessEntry,
    AwarenessMessage,
    SyncUpdate,
    decode_awareness,
    encode_awareness,
    encode_message,
)
from tests.fixtures.redis_server import redis_server
from tests.fixtures.server_process import ServerProcess
from tests.fixtures.ypeer import YPeer, joined, room_token
from tests.test_crash_recovery import Typists, add_task, type_until_stopped, typed
from tests.test_snapshots_e2e import eventually, names_in
from tests.test_ws_e2e import new_diagram, task_ids

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

QUICK = {"SNAPSHOT_IDLE_S": "0.3", "SNAPSHOT_MAX_INTERVAL_S": "2", "WS_UNLOAD_GRACE_S": "1"}
QUIET = {"SNAPSHOT_IDLE_S": "3600", "SNAPSHOT_MAX_INTERVAL_S": "3600"}


@asynccontextmanager
async def workers(
    tmp_path: Path, postgres_dsn: str, redis_url: str, count: int, **settings: str
) -> AsyncIterator[list[ServerProcess]]:
    env = {"DATABASE_URL": postgres_dsn, "REDIS_URL": redis_url, **QUICK, **settings}
    started: list[ServerProcess] = []
    try:
        first = ServerProcess(tmp_path / "w0", env)
        started.append(first)
        await first.start()  # migrates; the others then start on a migrated database
        for n in range(1, count):
            worker = ServerProcess(tmp_path / f"w{n}", env)
            worker.org = first.org  # one organization across workers
            started.append(worker)
        await asyncio.gather(*(w.start() for w in started[1:]))
        yield started
    finally:
        await asyncio.gather(*(w.stop() for w in started), return_exceptions=True)


def ws_url(worker: ServerProcess) -> str:
    return f"ws://127.0.0.1:{worker.port}/collab"


async def test_nine_editors_on_three_workers_converge_and_a_late_joiner_gets_it_all(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    # No snapshot while editing (a snapshot catches up from the log): only the bus can
    # carry the edits between workers; the rooms' unload writes the version.
    async with workers(tmp_path, postgres_dsn, redis_url, 4, **QUIET) as (w1, w2, w3, w4):
        async with w1.client() as client:
            diagram_id = await new_diagram(client)
            _, token = await room_token(client, diagram_id)
        async with AsyncExitStack() as stack:
            peers = [
                await stack.enter_async_context(joined(ws_url(worker), diagram_id, token))
                for worker in (w1, w2, w3)
                for _ in range(3)
            ]
            parent = str(peers[0].elements[task_ids(peers[0])[0]]["parent"])
            # Every editor adds its own elements, all at once.
            await asyncio.gather(
                *(
                    peer.edit(add_task(parent, f"typed-{n}-{i}"))
                    for i in range(5)
                    for n, peer in enumerate(peers)
                )
            )
            expected = {f"typed-{n}-{i}" for n in range(9) for i in range(5)}
            for peer in peers:
                await peer.wait_for(lambda peer=peer: typed(peer) == expected, timeout_s=15)

            # A late joiner on a fourth worker, which never had the room, gets everything.
            async with joined(ws_url(w4), diagram_id, token) as late:
                assert typed(late) == expected

        async with w4.client() as client:

            async def all_in_xml() -> bool:
                xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
                return expected <= names_in(xml)

            await eventually(all_in_xml, timeout_s=20)


async def test_awareness_crosses_workers(tmp_path: Path, postgres_dsn: str, redis_url: str) -> None:
    async with workers(tmp_path, postgres_dsn, redis_url, 2) as (w1, w2):
        async with w1.client() as client:
            diagram_id = await new_diagram(client)
            _, token = await room_token(client, diagram_id)
        async with joined(ws_url(w1), diagram_id, token) as ann:
            async with joined(ws_url(w2), diagram_id, token) as bob:
                state = json.dumps({"user": {"name": "Ann"}, "cursor": [10, 20]})
                entry = AwarenessEntry(client_id=4242, clock=1, state=state)
                await ann.ws.send(encode_message(AwarenessMessage(encode_awareness([entry]))))
                await bob.wait_for(lambda: 4242 in _present(bob), timeout_s=10)
                assert _present(bob)[4242] == state

            # A third editor joining later on the other worker learns it too.
            async with joined(ws_url(w2), diagram_id, token) as cat:
                await cat.wait_for(lambda: 4242 in _present(cat), timeout_s=10)

            # Leaving removes the state on the other worker as well.
            async with joined(ws_url(w2), diagram_id, token) as dan:
                await dan.wait_for(lambda: 4242 in _present(dan), timeout_s=10)
                await ann.ws.close()
                await dan.wait_for(lambda: 4242 not in _present(dan), timeout_s=10)


def _present(peer: YPeer) -> dict[int, str]:
    """Awareness states as the peer would hold them after every message it received."""
    states: dict[int, tuple[int, str]] = {}
    for payload in peer.awareness:
        for entry in decode_awareness(payload):
            if entry.client_id not in states or states[entry.client_id][0] <= entry.clock:
                states[entry.client_id] = (entry.clock, entry.state)
    return {cid: state for cid, (_, state) in states.items() if state != "null"}


async def test_kill_9_of_one_worker_loses_no_accepted_update(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    async with workers(tmp_path, postgres_dsn, redis_url, 2) as (doomed, survivor):
        async with survivor.client() as client:
            diagram_id = await new_diagram(client)
            _, token = await room_token(client, diagram_id)
        sent: list[str] = []
        async with joined(ws_url(survivor), diagram_id, token) as observer:
            async with joined(ws_url(doomed), diagram_id, token) as typist:
                parent = str(typist.elements[task_ids(typist)[0]]["parent"])
                typing = asyncio.create_task(type_until_stopped(typist, parent, sent))
                await observer.wait_for(lambda: len(typed(observer)) >= 30, timeout_s=30)
                await doomed.kill()  # mid-typing
                await typing
                held = typist.doc.get_update()
            accepted = typed(observer)  # fanned out, so logged before the kill

            # The typist reconnects to the surviving worker with what it holds.
            async with joined(ws_url(survivor), diagram_id, token) as back:
                back.doc.apply_update(held)
                await back.ws.send(encode_message(SyncUpdate(held)))
                everything = set(sent)
                await observer.wait_for(lambda: everything <= typed(observer), timeout_s=20)
            assert accepted <= everything

        async with survivor.client() as client:

            async def all_in_xml() -> bool:
                xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
                return everything <= names_in(xml)

            await eventually(all_in_xml, timeout_s=20)
            versions = (await client.get(f"/api/diagrams/{diagram_id}/versions")).json()["data"]
            revs = [v["rev"] for v in versions]
            assert revs == list(range(revs[0], 0, -1))


async def test_the_accepted_updates_of_a_killed_worker_survive_even_if_nobody_brings_them_back(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    async with workers(tmp_path, postgres_dsn, redis_url, 2) as (doomed, survivor):
        async with survivor.client() as client:
            diagram_id = await new_diagram(client)
            _, token = await room_token(client, diagram_id)
        async with (
            joined(ws_url(doomed), diagram_id, token) as observer,
            joined(ws_url(doomed), diagram_id, token) as typist,
        ):
            parent = str(typist.elements[task_ids(typist)[0]]["parent"])
            typing = asyncio.create_task(type_until_stopped(typist, parent, []))
            await observer.wait_for(lambda: len(typed(observer)) >= 30, timeout_s=30)
            await doomed.kill()
            accepted = typed(observer)
            await typing
        # Only a fresh client on the other worker: the room there rebuilds from the
        # last version plus the Redis stream.
        async with joined(ws_url(survivor), diagram_id, token) as fresh:
            assert accepted <= typed(fresh)


async def test_redis_restarted_under_load_loses_nothing(tmp_path: Path, postgres_dsn: str) -> None:
    async with (
        redis_server(tmp_path / "redis") as redis,
        # Snapshots off while editing: versions merged through Postgres would also bring
        # the workers together; this checks the bus's own resync.
        workers(tmp_path, postgres_dsn, redis.url, 2, **QUIET) as (w1, w2),
    ):
        async with w1.client() as client:
            diagram_id = await new_diagram(client)
            _, token = await room_token(client, diagram_id)
        async with (
            joined(ws_url(w1), diagram_id, token) as ann,
            joined(ws_url(w2), diagram_id, token) as bob,
        ):
            typists = Typists(str(ann.elements[task_ids(ann)[0]]["parent"]), ann, bob)
            await bob.wait_for(lambda: len(typed(bob)) >= 20, timeout_s=20)
            await redis.stop()
            await asyncio.sleep(2)  # typing goes on while Redis is away...
            everything = await typists.stop()
            # ...and stops before it returns: nothing new will push the outage's edits out,
            # the workers must resync by themselves.
            await redis.start()
            assert ann.close_code is None and bob.close_code is None

            # The bound: converged within 5 s after Redis returns.
            await ann.wait_for(lambda: everything <= typed(ann), timeout_s=5)
            await bob.wait_for(lambda: everything <= typed(bob), timeout_s=5)

        async with w2.client() as client:

            async def all_in_xml() -> bool:
                xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
                return everything <= names_in(xml)

            await eventually(all_in_xml, timeout_s=20)


async def test_a_dead_workers_clients_leave_everyones_awareness_after_the_timeout(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    quick_expiry = {"WS_AWARENESS_TIMEOUT_S": "2"}
    async with workers(tmp_path, postgres_dsn, redis_url, 2, **quick_expiry) as (doomed, w2):
        async with w2.client() as client:
            diagram_id = await new_diagram(client)
            _, token = await room_token(client, diagram_id)
        async with joined(ws_url(w2), diagram_id, token) as bob:
            async with joined(ws_url(doomed), diagram_id, token) as ann:
                entry = AwarenessEntry(client_id=777, clock=1, state='{"user":"ann"}')
                await ann.ws.send(encode_message(AwarenessMessage(encode_awareness([entry]))))
                await bob.wait_for(lambda: 777 in _present(bob), timeout_s=10)
                await doomed.kill()  # no removal is ever published for ann
            await bob.wait_for(lambda: 777 not in _present(bob), timeout_s=10)
