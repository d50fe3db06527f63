"""REST saves racing the snapshotter while editors type: 200 or 409, never a lost write."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
from lxml import etree
from websockets.exceptions import ConnectionClosed

from tests.fixtures.live_server import run_server
from tests.fixtures.ypeer import YPeer, joined, room_token
from tests.test_crash_recovery import add_task, typed
from tests.test_snapshots_e2e import eventually, names_in, settings_for
from tests.test_ws_e2e import new_diagram, task_ids

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
XML = {"Content-Type": "application/xml"}
REST_SAVES = 20


def with_task(xml: bytes, element_id: str) -> bytes:
    """``xml`` with one more task in its first process, as a modeler would save it."""
    root = etree.fromstring(xml)
    process = next(el for el in root.iter(f"{{{BPMN_NS}}}process"))
    etree.SubElement(process, f"{{{BPMN_NS}}}task", id=element_id, name=element_id)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


async def type_steadily(peer: YPeer, parent: str, who: str, sent: list[str]) -> None:
    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
        for n in range(100_000):
            element_id = f"typed-{who}-{n:05d}"
            await peer.edit(add_task(parent, element_id))
            sent.append(element_id)
            await asyncio.sleep(0.02)


async def rest_saves(client: httpx.AsyncClient, diagram_id: str) -> dict[str, int]:
    """Each save edits the version it just read; returns element id -> status."""
    outcomes: dict[str, int] = {}
    for n in range(REST_SAVES):
        current = await client.get(f"/api/diagrams/{diagram_id}")
        assert current.status_code == 200
        body: dict[str, Any] = current.json()
        element_id = f"rest-{n:02d}"
        saved = await client.put(
            f"/api/diagrams/{diagram_id}",
            content=with_task(body["xml"].encode(), element_id),
            headers={**XML, "If-Match": f'"{body["version"]}"'},
        )
        outcomes[element_id] = saved.status_code
        if saved.status_code == 409:
            assert saved.headers["content-type"].startswith("application/problem+json")
        await asyncio.sleep(0.05)
    return outcomes


async def test_rest_saves_race_the_snapshotter_and_nothing_is_lost(tmp_path: Path) -> None:
    # Short pauses make the snapshotter write often, so saves and snapshots collide.
    settings = settings_for(tmp_path, idle_s=0.05)
    settings.snapshot.max_interval_s = 0.2
    async with run_server(settings) as live, live.user_client(user="rest") as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with (
            joined(url, diagram_id, token) as ann,
            joined(url, diagram_id, token) as bob,
            joined(url, diagram_id, token) as cat,
        ):
            parent = str(ann.elements[task_ids(ann)[0]]["parent"])
            sent: dict[str, list[str]] = {"ann": [], "bob": [], "cat": []}
            typing = [
                asyncio.create_task(type_steadily(peer, parent, name, sent[name]))
                for peer, name in ((ann, "ann"), (bob, "bob"), (cat, "cat"))
            ]
            outcomes = await rest_saves(client, diagram_id)
            for task in typing:
                task.cancel()
            await asyncio.gather(*typing)

            assert set(outcomes.values()) <= {200, 409}, outcomes
            accepted = {element for element, status in outcomes.items() if status == 200}
            assert accepted, "no REST save got through: the race was not exercised"
            everything = accepted | {e for elements in sent.values() for e in elements}
            for peer in (ann, bob, cat):
                assert peer.close_code is None
                await peer.wait_for(lambda peer=peer: everything <= _ids(peer), timeout_s=20)

            async def all_in_xml() -> bool:
                xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
                return everything <= names_in(xml)

            await eventually(all_in_xml, timeout_s=20)

        final = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
        ids = [el.get("id") for el in etree.fromstring(final).iter() if el.get("id")]
        assert len(ids) == len(set(ids))
        rejected = {element for element, status in outcomes.items() if status == 409}
        assert not rejected & set(ids)  # a refused save left no trace
        versions = await _all_revs(client, diagram_id)
        assert versions == list(range(versions[0], 0, -1))  # no gap, no repeat
        assert len(versions) > len(accepted) + 1  # live versions were written meanwhile


def _ids(peer: YPeer) -> set[str]:
    return typed(peer) | {key for key in peer.elements.keys() if key.startswith("rest-")}  # noqa: SIM118


async def _all_revs(client: httpx.AsyncClient, diagram_id: str) -> list[int]:
    revs: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/api/diagrams/{diagram_id}/versions", params=params)).json()
        revs += [item["rev"] for item in page["data"]]
        cursor = page.get("nextCursor")
        if not cursor:
            return revs
