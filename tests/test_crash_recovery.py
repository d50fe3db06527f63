"""kill -9 mid-typing loses no accepted update: the update log brings it back.

An update is accepted once the server fans it out: it is appended to the room's log
before any other client sees it. So everything an observer received before the
kill must be in the document a fresh client gets after the restart (before any old
client reconnects and could re-send it), and in the XML after the next snapshot.
Then the old clients reconnect and everything they hold converges too.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map
from websockets.exceptions import ConnectionClosed

from rooms.protocol import SyncUpdate, encode_message
from tests.fixtures.server_process import ServerProcess, server_process
from tests.fixtures.ypeer import YPeer, joined, room_token
from tests.test_snapshots_e2e import eventually, names_in
from tests.test_ws_e2e import new_diagram, task_ids

# No pause- or interval-triggered snapshot before the kill: only the log can recover.
_NO_SNAPSHOTS = {"SNAPSHOT_IDLE_S": "3600", "SNAPSHOT_MAX_INTERVAL_S": "3600"}
_QUICK_SNAPSHOTS = {"SNAPSHOT_IDLE_S": "0.3", "WS_UNLOAD_GRACE_S": "0.2"}


def add_task(parent: str, element_id: str) -> Any:
    def change(doc: Doc[Any]) -> None:
        doc.get("elements", type=Map)[element_id] = Map(
            {
                "type": "bpmn:task",
                "parent": parent,
                "order": "z" + element_id,
                "attrs": Map({"name": element_id}),
                "text": Map(),
                "body": Map(),
            }
        )

    return change


def typed(peer: YPeer) -> set[str]:
    return {key for key in peer.elements.keys() if key.startswith("typed-")}  # noqa: SIM118 - a Y map


async def type_until_stopped(
    peer: YPeer, parent: str, sent: list[str], *, prefix: str = "typed"
) -> None:
    with contextlib.suppress(ConnectionClosed, OSError, asyncio.CancelledError):
        for n in range(100_000):
            element_id = f"{prefix}-{n:05d}"
            await peer.edit(add_task(parent, element_id))
            sent.append(element_id)
            await asyncio.sleep(0.01)


class Typists:
    """Peers typing new elements side by side (prefixes typed-a, typed-b, ...) until stopped."""

    def __init__(self, parent: str, *peers: YPeer) -> None:
        self.sent: list[list[str]] = [[] for _ in peers]
        self._tasks = [
            asyncio.create_task(
                type_until_stopped(peer, parent, sent, prefix=f"typed-{chr(ord('a') + n)}")
            )
            for n, (peer, sent) in enumerate(zip(peers, self.sent, strict=True))
        ]

    async def stop(self) -> set[str]:
        """Stop typing; everything that was sent."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return {element for sent in self.sent for element in sent}


async def bring_back(peer: YPeer, held: bytes) -> None:
    """What a provider does on reconnect: send the server what it holds."""
    peer.doc.apply_update(held)
    await peer.ws.send(encode_message(SyncUpdate(held)))


async def crash_and_recover(server: ServerProcess) -> None:
    await server.start(**_NO_SNAPSHOTS)
    async with server.client("ada") as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)

    sent: list[str] = []
    async with joined(url, diagram_id, token) as typist, joined(url, diagram_id, token) as observer:
        parent = str(typist.elements[task_ids(typist)[0]]["parent"])
        typing = asyncio.create_task(type_until_stopped(typist, parent, sent))
        await observer.wait_for(lambda: len(typed(observer)) >= 40, timeout_s=30)
        await server.kill()  # mid-typing
        accepted = typed(observer)
        await observer.wait_closed()
        await typing
        typist_doc = typist.doc.get_update()
        observer_doc = observer.doc.get_update()
    assert len(accepted) >= 40 and len(sent) >= len(accepted)

    await server.start(**_QUICK_SNAPSHOTS)
    async with server.client("ada") as client:
        url, token = await room_token(client, diagram_id)
        # A brand-new client, so nothing can come from the old clients' memory.
        async with joined(url, diagram_id, token) as fresh:
            assert accepted <= typed(fresh), sorted(accepted - typed(fresh))[:5]

            async def in_xml() -> bool:
                xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
                return accepted <= names_in(xml)

            await eventually(in_xml, timeout_s=20)
            latest = (await client.get(f"/api/diagrams/{diagram_id}/versions")).json()["data"][0]
            assert latest["metadata"].get("recovered") is True

            # The old clients come back with what they hold (the typist may hold updates
            # the server never accepted): afterwards everyone has everything.
            async with joined(url, diagram_id, token) as typist:
                await bring_back(typist, typist_doc)
                async with joined(url, diagram_id, token) as observer:
                    await bring_back(observer, observer_doc)
                    everything = set(sent)
                    await fresh.wait_for(lambda: everything <= typed(fresh), timeout_s=20)

            async def all_in_xml() -> bool:
                xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
                return everything <= names_in(xml)

            await eventually(all_in_xml, timeout_s=20)
        versions = (await client.get(f"/api/diagrams/{diagram_id}/versions")).json()["data"]
        revs = [v["rev"] for v in versions]
        assert revs == list(range(revs[0], 0, -1))  # strictly increasing, no gaps


async def test_kill_9_loses_no_accepted_update_on_the_embedded_default(tmp_path: Path) -> None:
    async with server_process(tmp_path / "data") as server:
        await crash_and_recover(server)


@pytest.mark.postgres
@pytest.mark.redis
async def test_kill_9_loses_no_accepted_update_with_redis_and_postgres(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    env = {"DATABASE_URL": postgres_dsn, "REDIS_URL": redis_url}
    async with server_process(tmp_path / "data", env) as server:
        await crash_and_recover(server)


async def test_after_a_crash_unsaved_updates_become_a_version_without_any_client(
    tmp_path: Path,
) -> None:
    async with server_process(tmp_path / "data") as server:
        await server.start(**_NO_SNAPSHOTS)
        async with server.client("ada") as client:
            diagram_id = await new_diagram(client)
            url, token = await room_token(client, diagram_id)
        sent: list[str] = []
        async with (
            joined(url, diagram_id, token) as typist,
            joined(url, diagram_id, token) as observer,
        ):
            parent = str(typist.elements[task_ids(typist)[0]]["parent"])
            typing = asyncio.create_task(type_until_stopped(typist, parent, sent))
            await observer.wait_for(lambda: len(typed(observer)) >= 20, timeout_s=30)
            await server.kill()
            accepted = typed(observer)
            await typing

        await server.start(**_QUICK_SNAPSHOTS)  # nobody reconnects
        async with server.client("ada") as client:

            async def in_xml() -> bool:
                xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
                return accepted <= names_in(xml)

            await eventually(in_xml, timeout_s=20)
            versions = (await client.get(f"/api/diagrams/{diagram_id}/versions")).json()["data"]
            assert [v["rev"] for v in versions] == [2, 1]
            assert versions[0]["metadata"]["recovered"] is True
