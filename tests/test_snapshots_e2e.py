"""Live edits become versions: after a pause, on unload, at shutdown; never for nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from lxml import etree

from persistence.models import NewContent
from rooms.protocol import QueryAwareness, encode_message
from server.documents import room_key
from server.live_saves import prepare_fold
from server.settings import Settings
from tests.fixtures.live_server import LiveServer, make_settings, run_server
from tests.fixtures.ypeer import YPeer, joined, room_token
from tests.samples import REFERENCE
from tests.test_ws_e2e import name_of, new_diagram, org_of, rename, task_ids

A_2_0 = (REFERENCE / "A.2.0.bpmn").read_bytes()
A_1_0 = (REFERENCE / "A.1.0.bpmn").read_bytes()
XML = {"Content-Type": "application/xml"}


def settings_for(tmp_path: Path, *, idle_s: float, unload_grace_s: float = 0.1) -> Settings:
    settings = make_settings(tmp_path)
    settings.snapshot.idle_s = idle_s
    settings.snapshot.max_interval_s = 30
    settings.ws.unload_grace_s = unload_grace_s
    return settings


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    """Poll an observable outcome (the REST API) until it holds, within a deadline."""
    async with asyncio.timeout(timeout_s):
        # The outcome is observed over HTTP: there is no event to await.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def version_of(client: httpx.AsyncClient, diagram_id: str) -> int:
    version: int = (await client.get(f"/api/diagrams/{diagram_id}/summary")).json()["version"]
    return version


def names_in(xml: bytes) -> set[str]:
    return {el.get("name") or "" for el in etree.fromstring(xml).iter() if isinstance(el.tag, str)}


async def test_a_pause_in_editing_writes_a_version_by_the_editor(tmp_path: Path) -> None:
    async with (
        run_server(settings_for(tmp_path, idle_s=0.2)) as live,
        live.user_client(user="ada") as client,
    ):
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as peer:
            task = task_ids(peer)[0]
            await peer.edit(rename(task, "Renamed live"))
            await eventually(lambda: _at_version(client, diagram_id, 2))
            assert "Renamed live" in names_in(
                (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
            )
            latest = (await client.get(f"/api/diagrams/{diagram_id}/versions")).json()["data"][0]
            assert (latest["rev"], latest["author"], latest["message"]) == (2, "ada", "live edit")
            assert latest["metadata"]["editors"] == ["ada"]

            # Edits after a version make the next one, based on it.
            await peer.edit(rename(task, "Renamed again"))
            await eventually(lambda: _at_version(client, diagram_id, 3))
            assert name_of(peer, task) == "Renamed again"


async def _at_version(client: httpx.AsyncClient, diagram_id: str, version: int) -> bool:
    return await version_of(client, diagram_id) >= version


async def test_opening_a_diagram_without_editing_writes_nothing(tmp_path: Path) -> None:
    async with run_server(settings_for(tmp_path, idle_s=0.1)) as live, live.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as peer:
            assert task_ids(peer)
        await wait_unloaded(live, client, diagram_id)
        assert await version_of(client, diagram_id) == 1
        assert len((await client.get(f"/api/diagrams/{diagram_id}/versions")).json()["data"]) == 1


async def wait_unloaded(live: LiveServer, client: httpx.AsyncClient, diagram_id: str) -> None:
    key = room_key(org_of(client), diagram_id, 0)

    async def gone() -> bool:
        return live.app.state.services.rooms.room(key) is None

    await eventually(gone)


async def test_leaving_writes_the_last_edits_when_the_room_unloads(tmp_path: Path) -> None:
    async with run_server(settings_for(tmp_path, idle_s=600)) as live, live.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as peer:
            task = task_ids(peer)[0]
            await peer.edit(rename(task, "Saved on unload"))
        # No pause-triggered snapshot (idle_s is long): only the unload writes this version.
        await eventually(lambda: _at_version(client, diagram_id, 2))
        await wait_unloaded(live, client, diagram_id)
        assert await version_of(client, diagram_id) == 2
        assert "Saved on unload" in names_in(
            (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
        )


async def test_a_title_only_save_does_not_stop_live_versions(tmp_path: Path) -> None:
    async with run_server(settings_for(tmp_path, idle_s=0.2)) as live, live.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as peer:
            task = task_ids(peer)[0]
            renamed = await client.put(
                f"/api/diagrams/{diagram_id}", json={"expectedVersion": 1, "title": "New title"}
            )
            assert renamed.status_code == 200
            await peer.edit(rename(task, "After the rename"))
            await eventually(lambda: _at_version(client, diagram_id, 3))
            summary: dict[str, Any] = (
                await client.get(f"/api/diagrams/{diagram_id}/summary")
            ).json()
            assert summary["title"] == "New title"
            assert "After the rename" in names_in(
                (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
            )


async def test_shutdown_writes_open_rooms(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, idle_s=600, unload_grace_s=600)
    async with run_server(settings) as live, live.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        peer_ctx = joined(url, diagram_id, token)
        peer = await peer_ctx.__aenter__()
        task = task_ids(peer)[0]
        await peer.edit(rename(task, "Saved at shutdown"))
        # A query-awareness round trip: the server has handled the edit before we stop it.
        answered = len(peer.awareness)
        await peer.ws.send(encode_message(QueryAwareness()))
        await peer.wait_for(lambda: len(peer.awareness) > answered)
        user_token = client.headers["authorization"]
    # The server stopped (closing the peer with 1012); a new one on the same data sees the version.
    assert await peer.wait_closed() == 1012
    await peer_ctx.__aexit__(None, None, None)
    async with run_server(settings) as again, again.client() as client:
        client.headers["authorization"] = user_token
        assert await version_of(client, diagram_id) == 2
        assert "Saved at shutdown" in names_in(
            (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
        )


async def test_a_rest_save_into_a_live_room_is_folded_and_keeps_editors_work(
    tmp_path: Path,
) -> None:
    # A pause of 1 s before a live version leaves the REST save below time to land on version 2.
    async with (
        run_server(settings_for(tmp_path, idle_s=1.0)) as live,
        live.user_client(user="rest") as client,
    ):
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as editor:
            by_name = {name_of(editor, key): key for key in task_ids(editor)}
            first, second, third = by_name["Task 1"], by_name["Task 2"], by_name["Task 3"]
            await editor.edit(rename(first, "Editor's name"))
            await eventually(lambda: _at_version(client, diagram_id, 2))

            # A REST client edits version 2's XML (Task 2 renamed) while the editor goes on
            # working on Task 3; the save is based on version 2.
            version_2 = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
            await editor.edit(rename(third, "Concurrent live edit"))
            saved_xml = version_2.replace(b'name="Task 2"', b'name="Renamed over REST"')
            assert saved_xml != version_2
            saved = await client.put(
                f"/api/diagrams/{diagram_id}", content=saved_xml, headers={**XML, "If-Match": '"2"'}
            )
            assert saved.status_code == 200, saved.text
            assert saved.json()["version"] == 3
            assert (await client.get(f"/api/diagrams/{diagram_id}/versions/3")).content == saved_xml

            # The editor sees the REST change live, keeps its own work, and is not thrown out.
            await editor.wait_for(lambda: name_of(editor, second) == "Renamed over REST")
            assert name_of(editor, first) == "Editor's name"
            assert name_of(editor, third) == "Concurrent live edit"
            assert editor.close_code is None

            # The next live version holds both.
            await eventually(lambda: _at_version(client, diagram_id, 4))
            names = names_in((await client.get(f"/api/diagrams/{diagram_id}/xml")).content)
            assert {"Editor's name", "Renamed over REST", "Concurrent live edit"} <= names


async def test_a_rest_save_while_no_room_is_live_is_folded_into_the_stored_document(
    tmp_path: Path,
) -> None:
    async with run_server(settings_for(tmp_path, idle_s=0.1)) as live, live.user_client() as client:
        diagram_id = await new_diagram(client)
        url, old_token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, old_token) as peer:
            kept = task_ids(peer)[0]  # the room stored the document's first CRDT state
            held = peer.doc.get_update()
        await wait_unloaded(live, client, diagram_id)
        saved = await client.put(
            f"/api/diagrams/{diagram_id}", content=A_1_0, headers={**XML, "If-Match": '"1"'}
        )
        assert saved.status_code == 200, saved.text
        # Folded, not rebuilt: the document keeps its identities, so a client holding the old
        # one (same epoch, same token) syncs on without duplicating anything.
        expected = {el.get("id") for el in etree.fromstring(A_1_0).iter() if el.get("id")}
        async with joined(url, diagram_id, old_token) as again:
            again.doc.apply_update(held)  # what a client that was away brings back
            tasks = task_ids(again)
            assert kept not in tasks and tasks and set(tasks) <= expected
            await again.edit(rename(tasks[0], "still mine"))
            assert again.close_code is None
        await eventually(lambda: _at_version(client, diagram_id, 3))
        xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
        ids = [el.get("id") for el in etree.fromstring(xml).iter() if el.get("id")]
        assert len(ids) == len(set(ids)) and set(ids) == expected  # nothing duplicated
        assert "still mine" in names_in(xml)


async def test_fresh_xml_holds_live_changes_no_version_has_yet(tmp_path: Path) -> None:
    async with run_server(settings_for(tmp_path, idle_s=600)) as live, live.user_client() as client:
        diagram_id = await new_diagram(client)
        xml_url = f"/api/diagrams/{diagram_id}/xml"
        stored = (await client.get(xml_url)).content
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as peer:
            # Nothing pending: the stored bytes, as they are.
            assert (await client.get(xml_url, params={"fresh": "1"})).content == stored
            await peer.edit(rename(task_ids(peer)[0], "Not in a version yet"))
            await peer.wait_for(lambda: True)

            async def fresh_has_it() -> bool:
                answer = await client.get(xml_url, params={"fresh": "1"})
                return "Not in a version yet" in names_in(answer.content)

            await eventually(fresh_has_it)
            fresh = await client.get(xml_url, params={"fresh": "true"})
            assert fresh.headers["cache-control"] == "no-store"
            assert fresh.headers["x-based-on-version"] == "1"
            assert "etag" not in fresh.headers
            plain = await client.get(xml_url)
            assert plain.content == stored and plain.headers["etag"] == '"1"'
            bad = await client.get(xml_url, params={"fresh": "maybe"})
            assert bad.status_code == 422
            assert bad.headers["content-type"].startswith("application/problem+json")


async def test_within_idle_s_plus_1_s_of_the_last_edit_a_version_holds_every_edit(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)  # the default idle_s
    idle_s = settings.snapshot.idle_s
    async with run_server(settings) as live, live.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with (
            joined(url, diagram_id, token) as ann,
            joined(url, diagram_id, token) as bob,
            joined(url, diagram_id, token) as cat,
        ):
            tasks = task_ids(ann)
            for round_ in range(3):
                for n, (peer, who) in enumerate(((ann, "ann"), (bob, "bob"), (cat, "cat"))):
                    await peer.edit(rename(tasks[(round_ + n) % len(tasks)], f"{who} {round_}"))

            def names(peer: YPeer) -> list[str | None]:
                return [name_of(peer, task) for task in tasks]

            async def agreed() -> bool:
                return names(ann) == names(bob) == names(cat)

            await eventually(agreed)
            final = {name for name in names(ann) if name is not None}
            assert any(name.endswith(" 2") for name in final)

            async def version_has_every_edit() -> bool:
                xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
                return final <= names_in(xml)

            # The promise: a version within idle_s + 1 s after editing stops.
            await eventually(version_has_every_edit, timeout_s=idle_s + 1)
        revs = [
            v["rev"]
            for v in (await client.get(f"/api/diagrams/{diagram_id}/versions")).json()["data"]
        ]
        assert revs == list(range(revs[0], 0, -1)) and revs[0] >= 2


async def test_a_version_written_elsewhere_is_folded_into_the_room_by_the_snapshotter(
    tmp_path: Path,
) -> None:
    # As if another worker took a REST save: stored, but never applied to this room.
    async with (
        run_server(settings_for(tmp_path, idle_s=0.3)) as live,
        live.user_client(user="ada") as client,
    ):
        services = live.app.state.services
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as editor:
            by_name = {name_of(editor, key): key for key in task_ids(editor)}
            first, second = by_name["Task 1"], by_name["Task 2"]
            elsewhere = A_2_0.replace(b'name="Task 2"', b'name="Saved elsewhere"')
            prepared = await prepare_fold(services, org_of(client), diagram_id, 1, elsewhere)
            assert prepared is not None
            await services.store.save(
                org_of(client),
                diagram_id,
                expected_version=1,
                author="other-worker",
                content=NewContent(
                    xml=elsewhere,
                    element_count=0,
                    crdt_state=prepared.state,
                    log_position=prepared.log_position,
                ),
            )
            await editor.edit(rename(first, "Edited live"))

            # The snapshotter meets version 2, folds it in (the editor sees it), writes 3.
            await editor.wait_for(lambda: name_of(editor, second) == "Saved elsewhere")
            await eventually(lambda: _at_version(client, diagram_id, 3))
            xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
            assert {"Edited live", "Saved elsewhere"} <= names_in(xml)
            assert services.snapshots.metrics.folded >= 1
