"""Live rooms end to end: a real uvicorn, real WebSocket clients, real pycrdt documents."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from pycrdt import Doc, Map
from websockets.exceptions import ConnectionClosed

from bpmn.document import read
from bpmn.render import render
from persistence.models import Principal
from rooms.protocol import AwarenessMessage, QueryAwareness, SyncStep1, SyncUpdate, encode_message
from server.documents import room_key
from server.room_tokens import issue_room_token
from tests.fixtures.live_server import TEST_SECRET, LiveServer, make_settings, run_server
from tests.fixtures.ypeer import YPeer, joined, room_token
from tests.samples import REFERENCE

A_2_0 = (REFERENCE / "A.2.0.bpmn").read_bytes()
XML = {"Content-Type": "application/xml"}


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("ws"))
    async with run_server(settings) as server:
        yield server


async def new_diagram(client: httpx.AsyncClient) -> str:
    created = await client.post(
        "/api/diagrams", params={"title": "Live"}, content=A_2_0, headers=XML
    )
    assert created.status_code == 201, created.text
    diagram_id: str = created.json()["id"]
    return diagram_id


def task_ids(peer: YPeer) -> list[str]:
    return sorted(
        key for key, entry in peer.elements.items() if str(entry["type"]).endswith("task")
    )


def rename(element_id: str, name: str) -> Any:
    def change(doc: Doc[Any]) -> None:
        doc.get("elements", type=Map)[element_id]["attrs"]["name"] = name

    return change


def name_of(peer: YPeer, element_id: str) -> str | None:
    entry = peer.elements.get(element_id)
    return None if entry is None else entry["attrs"].get("name")


async def test_three_editors_converge_and_a_late_joiner_gets_everything(live: LiveServer) -> None:
    async with live.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as a, joined(url, diagram_id, token) as b:
            async with joined(url, diagram_id, token) as c:
                tasks = task_ids(a)
                assert len(tasks) >= 3 and task_ids(b) == tasks == task_ids(c)
                await asyncio.gather(
                    a.edit(rename(tasks[0], "from A")),
                    b.edit(rename(tasks[1], "from B")),
                    c.edit(rename(tasks[2], "from C")),
                )
                expected = {tasks[0]: "from A", tasks[1]: "from B", tasks[2]: "from C"}
                for peer in (a, b, c):
                    await peer.wait_for(
                        lambda p=peer: all(name_of(p, k) == v for k, v in expected.items())
                    )
                    assert peer.elements.to_py() == a.elements.to_py()

            async with joined(url, diagram_id, token) as late:
                assert all(name_of(late, k) == v for k, v in expected.items())
                got = (await client.get(f"/api/diagrams/{diagram_id}")).json()
                assert got["liveEditors"] == 3

        room = live.app.state.services.rooms.room(room_key(org_of(client), diagram_id, 0))
        xml = render(read(room.doc)) if room is not None else b""
        assert b"from A" in xml and b"from B" in xml and b"from C" in xml


def org_of(client: httpx.AsyncClient) -> str:
    token = client.headers["authorization"].removeprefix("Bearer ")
    org: str = jwt.decode(token, options={"verify_signature": False})["org"]
    return org


async def test_a_viewer_is_told_and_its_update_goes_nowhere(live: LiveServer) -> None:
    async with live.user_client() as owner:
        diagram_id = await new_diagram(owner)
        url, editor_token = await room_token(owner, diagram_id)
        org = org_of(owner)
    async with live.user_client(org=org, user="vic", role="viewer") as viewer_client:
        _, viewer_token = await room_token(viewer_client, diagram_id)
    async with (
        joined(url, diagram_id, editor_token) as editor,
        joined(url, diagram_id, viewer_token) as viewer,
    ):
        first, second = task_ids(viewer)[:2]
        await viewer.edit(rename(first, "viewer was here"))
        await viewer.wait_for(lambda: bool(viewer.auth))
        assert viewer.close_code is None  # told, not thrown out
        # Viewers still receive everything.
        await editor.edit(rename(second, "from the editor"))
        await viewer.wait_for(lambda: name_of(viewer, second) == "from the editor")
        # The refused change never reached the editor (it had the editor's update after it).
        assert "viewer was here" not in str(editor.elements.to_py())


async def test_bad_messages_close_only_their_sender(live: LiveServer) -> None:
    async with live.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as good:
            async with joined(url, diagram_id, token) as garbage:
                await garbage.ws.send(b"\x00\x07\xff\xff")
                assert await garbage.wait_closed() == 4400
            async with joined(url, diagram_id, token) as text:
                await text.ws.send("hello")
                assert await text.wait_closed() == 4400
            limit = live.settings.ws.max_message_bytes
            async with joined(url, diagram_id, token) as big:
                await big.ws.send(b"\x00\x02" + b"\x00" * (limit + 10))
                assert await big.wait_closed() == 1009
            task = task_ids(good)[0]
            async with joined(url, diagram_id, token) as other:
                await other.edit(rename(task, "still alive"))
                await good.wait_for(lambda: name_of(good, task) == "still alive")
            assert good.close_code is None


async def expect_refusal(url: str, diagram_id: str, token: str, code: int) -> None:
    async with joined(url, diagram_id, token) as peer:
        assert await peer.wait_closed() == code
        assert not peer.synced.is_set()


async def test_tokens_are_checked_with_the_right_close_codes(live: LiveServer) -> None:
    async with live.user_client() as client:
        diagram_id = await new_diagram(client)
        other_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        org = org_of(client)
    principal_claims = jwt.decode(token, options={"verify_signature": False})
    principal = Principal(user_id=principal_claims["sub"], org_id=org)
    expired, _ = issue_room_token(
        TEST_SECRET,
        diagram_id=diagram_id,
        principal=principal,
        epoch=0,
        ttl_s=60,
        now=time.time() - 3600,
    )
    forged, _ = issue_room_token(
        "not-the-secret-" + "z" * 40, diagram_id=diagram_id, principal=principal, epoch=0, ttl_s=60
    )
    await expect_refusal(url, diagram_id, expired, 4401)
    await expect_refusal(url, diagram_id, forged, 4401)
    await expect_refusal(url, diagram_id, "not-a-jwt", 4401)
    await expect_refusal(url, other_id, token, 4403)
    missing = "00000000-0000-4000-8000-000000000000"
    missing_token, _ = issue_room_token(
        TEST_SECRET, diagram_id=missing, principal=principal, epoch=0, ttl_s=60
    )
    await expect_refusal(url, missing, missing_token, 4404)
    stranger = Principal(user_id="eve", org_id="org-elsewhere")
    foreign, _ = issue_room_token(
        TEST_SECRET, diagram_id=diagram_id, principal=stranger, epoch=0, ttl_s=60
    )
    await expect_refusal(url, diagram_id, foreign, 4404)
    # A reset document: the token's epoch is stale, the client must reload.
    await live.app.state.services.store.bump_epoch(org, diagram_id)
    await expect_refusal(url, diagram_id, token, 4409)


async def test_collaborate_answers_what_y_websocket_needs(live: LiveServer) -> None:
    async with live.user_client() as client:
        diagram_id = await new_diagram(client)
        answer = (await client.post(f"/api/diagrams/{diagram_id}/collaborate")).json()
        assert answer["url"] == live.url.replace("http://", "ws://") + "/collab"
        assert answer["role"] == "editor"
        claims = jwt.decode(answer["token"], TEST_SECRET, algorithms=["HS256"], audience="room")
        assert claims["dia"] == diagram_id and claims["epo"] == 0
        # A room token is not a user token.
        as_user = await client.get(
            "/api/diagrams", headers={"Authorization": f"Bearer {answer['token']}"}
        )
        assert as_user.status_code == 401


async def test_origin_allow_list(tmp_path: Any) -> None:
    settings = make_settings(tmp_path)
    settings.ws.allowed_origins = ["https://studio.example"]
    async with run_server(settings) as server, server.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token, origin="https://evil.example") as peer:
            assert await peer.wait_closed() == 4403
        async with joined(url, diagram_id, token, origin="https://studio.example") as peer:
            assert peer.synced.is_set()


def mutations(valid: list[bytes], rng: random.Random, count: int) -> list[bytes]:
    """Valid frames with bytes flipped, cut, repeated or spliced, plus pure noise."""
    out: list[bytes] = []
    for _ in range(count):
        frame = bytearray(rng.choice(valid))
        kind = rng.randrange(5)
        if kind == 0 and frame:
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        elif kind == 1:
            frame = frame[: rng.randrange(len(frame) + 1)]
        elif kind == 2:
            frame += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        elif kind == 3:
            frame = bytearray(rng.choice(valid)[:3]) + frame[3:]
        else:
            frame = bytearray(rng.randbytes(rng.randrange(1, 64)))
        out.append(bytes(frame))
    return out


def handled(peer: YPeer, answers_before: int) -> bool:
    return peer.close_code is not None or len(peer.awareness) > answers_before


async def test_fuzzed_frames_over_real_sockets_close_only_their_senders(live: LiveServer) -> None:
    rng = random.Random(20261125)  # fixed seed: a failure reproduces
    async with live.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as good, joined(url, diagram_id, token) as donor:
            task = task_ids(good)[0]
            before = donor.doc.get_state()
            await donor.edit(rename(task, "donor"))
            valid = [
                encode_message(SyncUpdate(donor.doc.get_update(before))),
                encode_message(SyncStep1(donor.doc.get_state())),
                encode_message(AwarenessMessage(b"\x01\x05\x01\x02{}")),
                encode_message(QueryAwareness()),
            ]
            closed_codes: list[int | None] = []
            for frame in mutations(valid, rng, 60):
                async with joined(url, diagram_id, token) as attacker:
                    answered = len(attacker.awareness)
                    await attacker.ws.send(frame)
                    # Query-awareness is always answered: once it is, the frame before it
                    # was handled; otherwise the server closed the connection.
                    with contextlib.suppress(ConnectionClosed):
                        await attacker.ws.send(encode_message(QueryAwareness()))
                    await attacker.wait_for(
                        lambda a=attacker, n=answered: (
                            a.close_code is not None or len(a.awareness) > n
                        )
                    )
                    closed_codes.append(attacker.close_code)
            assert any(code == 4400 for code in closed_codes)
            assert all(code in (None, 1000, 4400, 1009) for code in closed_codes), closed_codes
            # The room and its good client are unharmed and still live.
            await donor.edit(rename(task, "after the storm"))
            await good.wait_for(lambda: name_of(good, task) == "after the storm")
            assert good.close_code is None


async def test_a_socket_outliving_its_token_is_told_then_closed(tmp_path: Any) -> None:
    settings = make_settings(tmp_path)
    settings.ws.token_expiry_grace_s = 0.3
    async with run_server(settings) as server, server.user_client() as client:
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        claims = jwt.decode(token, options={"verify_signature": False})
        principal = Principal(user_id=claims["sub"], org_id=claims["org"])
        # Valid for one more second (the server allows clock leeway only at connect).
        short, _ = issue_room_token(
            TEST_SECRET, diagram_id=diagram_id, principal=principal, epoch=0, ttl_s=1
        )
        async with joined(url, diagram_id, short) as peer:
            assert peer.close_code is None
            await peer.wait_for(lambda: bool(peer.auth))
            assert "expired" in peer.auth[0].reason
            assert await peer.wait_closed() == 4401
