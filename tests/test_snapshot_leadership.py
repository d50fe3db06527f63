"""Two workers racing to snapshot the same room: no duplicate version, no lost update.

Two in-process servers share Postgres and Redis. With the snapshot lock replaced by
one that always grants, both write whenever they like (a forced race): the version
check alone must keep them apart. With the real Redis lock, they take turns.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from server.documents import room_key
from server.services import ServiceOverrides
from server.settings import Settings
from server.snapshot_lock import LocalSnapshotLock, RedisSnapshotLock
from tests.fixtures.live_server import LiveServer, make_settings, run_server, unique_org
from tests.fixtures.ypeer import joined, room_token
from tests.test_crash_recovery import Typists, typed
from tests.test_snapshots_e2e import eventually, names_in
from tests.test_ws_e2e import new_diagram, task_ids

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def worker_settings(tmp_path: Path, name: str, postgres_dsn: str, redis_url: str) -> Settings:
    settings = make_settings(tmp_path / name, database_url=postgres_dsn, redis_url=redis_url)
    settings.snapshot.idle_s = 0.05
    settings.snapshot.max_interval_s = 0.2
    return settings


@pytest.mark.parametrize("forced", [True, False], ids=["no-lock", "redis-lock"])
async def test_racing_snapshots_write_no_duplicate_and_lose_nothing(
    tmp_path: Path, postgres_dsn: str, redis_url: str, forced: bool
) -> None:
    def overrides() -> ServiceOverrides | None:
        return ServiceOverrides(snapshot_lock=LocalSnapshotLock()) if forced else None

    org = unique_org()
    async with (
        run_server(worker_settings(tmp_path, "a", postgres_dsn, redis_url), overrides()) as a,
        run_server(worker_settings(tmp_path, "b", postgres_dsn, redis_url), overrides()) as b,
        a.client(a.token(user="ann", org=org)) as client,
    ):
        diagram_id = await new_diagram(client)
        _, token = await room_token(client, diagram_id)
        async with (
            joined(_ws(a), diagram_id, token) as ann,
            joined(_ws(b), diagram_id, token) as bob,
        ):
            typists = Typists(str(ann.elements[task_ids(ann)[0]]["parent"]), ann, bob)
            await bob.wait_for(lambda: len(typed(bob)) >= 150, timeout_s=30)
            everything = await typists.stop()

            async def all_in_xml() -> bool:
                xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
                return everything <= names_in(xml)

            await eventually(all_in_xml, timeout_s=20)
            await asyncio.sleep(0.5)  # let both snapshotters settle on the last version

        revs = await _revs(client, diagram_id)
        assert revs == list(range(revs[0], 0, -1))
        xmls = [
            (await client.get(f"/api/diagrams/{diagram_id}/versions/{rev}")).content
            for rev in reversed(revs)
        ]
        duplicates = [n + 1 for n in range(len(xmls) - 1) if xmls[n] == xmls[n + 1]]
        assert not duplicates, f"versions {duplicates} repeat the one before"
        # Each version holds everything the one before held: nothing was overwritten.
        for older, newer in itertools.pairwise(xmls[1:]):
            assert _typed_names(older) <= _typed_names(newer)
        conflicts = sum(w.app.state.services.snapshots.metrics.conflicts for w in (a, b))
        written = [w.app.state.services.snapshots.metrics.written for w in (a, b)]
        if forced:
            assert conflicts > 0, "the race never happened"
            assert all(written), written  # both workers wrote versions


def _typed_names(xml: bytes) -> set[str]:
    return {name for name in names_in(xml) if name.startswith("typed-")}


def _ws(worker: LiveServer) -> str:
    return worker.url.replace("http://", "ws://") + "/collab"


async def _revs(client: httpx.AsyncClient, diagram_id: str) -> list[int]:
    page = (await client.get(f"/api/diagrams/{diagram_id}/versions", params={"limit": 100})).json()
    assert not page["hasMore"]
    return [item["rev"] for item in page["data"]]


async def test_a_reset_on_one_worker_closes_the_rooms_clients_on_the_others(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    org = unique_org()
    async with (
        run_server(worker_settings(tmp_path, "a", postgres_dsn, redis_url)) as a,
        run_server(worker_settings(tmp_path, "b", postgres_dsn, redis_url)) as b,
        a.client(a.token(user="ann", org=org)) as client,
    ):
        diagram_id = await new_diagram(client)
        _, token = await room_token(client, diagram_id)
        async with joined(_ws(b), diagram_id, token) as bob:
            key = room_key(org, diagram_id, 0)
            # Worker a has no room open; its save replaced the document (epoch moved).
            await a.app.state.services.fanout.reset(key, a.app.state.services.rooms.room(key))
            assert await bob.wait_closed() == 4409


# --- the Redis lock itself ------------------------------------------------------------------


async def test_a_held_lock_is_renewed_and_a_dead_holders_lock_runs_out(
    redis_client: redis.asyncio.Redis,
) -> None:
    room = f"room-{unique_org()}"
    prefix = f"test-lock-{unique_org()}:"
    holder = RedisSnapshotLock(redis_client, ttl_s=0.3, prefix=prefix)
    other = RedisSnapshotLock(redis_client, ttl_s=0.3, prefix=prefix)
    assert await holder.acquire(room)
    await asyncio.sleep(1.0)  # three lifetimes: renewed all along
    assert not await other.acquire(room)
    await holder.release(room)
    assert await other.acquire(room)
    await other.release(room)

    # A holder that died (its renewals stopped) blocks the others for one lifetime only.
    assert await holder.acquire(room)
    holder._renewals.pop(room).cancel()
    assert not await other.acquire(room)
    await asyncio.sleep(0.5)
    assert await other.acquire(room)
    await other.release(room)
