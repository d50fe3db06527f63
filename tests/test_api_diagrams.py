"""The diagrams REST API end to end, on a real uvicorn, on SQLite and on Postgres."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import orjson
import pytest
from lxml import etree

from server.auth import issue_user_token
from tests.fixtures.live_server import TEST_SECRET, LiveServer, unique_org
from tests.samples import REFERENCE

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
A_1_0 = (REFERENCE / "A.1.0.bpmn").read_bytes()


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"].endswith(body["code"])
    if code is not None:
        assert body["code"] == code
    return body


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("title", "Order handling")
    response = await client.post("/api/diagrams", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_without_xml_gives_a_minimal_valid_diagram(api: LiveServer) -> None:
    async with api.user_client() as client:
        response = await client.post("/api/diagrams", json={"title": "  Fresh  "})
        assert response.status_code == 201
        created = response.json()
        assert response.headers["location"] == f"/api/diagrams/{created['id']}"
        assert response.headers["etag"] == '"1"'
        assert created["title"] == "Fresh"
        assert created["version"] == 1
        assert created["elementCount"] >= 2  # process and start event

        xml = (await client.get(f"/api/diagrams/{created['id']}/xml")).content
        root = etree.fromstring(xml)
        assert root.tag == f"{{{BPMN_NS}}}definitions"
        assert root.find(f".//{{{BPMN_NS}}}startEvent") is not None


async def test_get_and_summary_answer_304_for_the_current_etag(api: LiveServer) -> None:
    async with api.user_client() as client:
        created = await create(client, xml=A_1_0.decode())
        url = f"/api/diagrams/{created['id']}"
        full = await client.get(url)
        assert full.status_code == 200
        assert full.headers["etag"] == '"1"'
        assert full.json()["xml"] == A_1_0.decode()
        assert (await client.get(url, headers={"If-None-Match": '"1"'})).status_code == 304
        summary = await client.get(url + "/summary")
        assert "xml" not in summary.json()
        assert summary.json()["elementCount"] == created["elementCount"]
        assert (
            await client.get(url + "/summary", headers={"If-None-Match": 'W/"1"'})
        ).status_code == 304
        assert (
            await client.get(url + "/summary", headers={"If-None-Match": '"7"'})
        ).status_code == 200


async def test_save_moves_the_version_and_keeps_history(api: LiveServer) -> None:
    async with api.user_client(user="bob") as client:
        created = await create(client)
        url = f"/api/diagrams/{created['id']}"
        saved = await client.put(
            url, json={"expectedVersion": 1, "xml": A_1_0.decode(), "message": "import"}
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["version"] == 2 and saved.headers["etag"] == '"2"'

        renamed = await client.put(url, json={"title": "Renamed"}, headers={"If-Match": '"2"'})
        assert renamed.status_code == 200 and renamed.json()["title"] == "Renamed"

        raw = await client.put(
            url, content=A_1_0, headers={"Content-Type": "application/xml", "If-Match": "3"}
        )
        assert raw.status_code == 200 and raw.json()["version"] == 4

        versions = (await client.get(url + "/versions")).json()
        assert [v["rev"] for v in versions["data"]] == [4, 3, 2, 1]
        assert versions["data"][2]["message"] == "import"
        assert all(v["author"] == "bob" for v in versions["data"])
        first = await client.get(url + "/versions/1")
        assert first.status_code == 200 and b"startEvent" in first.content
        assert (await client.get(url + "/versions/2")).content == A_1_0
        assert_problem(await client.get(url + "/versions/9"), 404, "version_not_found")


async def test_a_stale_save_gets_409_with_both_versions(api: LiveServer) -> None:
    async with api.user_client() as client:
        created = await create(client)
        url = f"/api/diagrams/{created['id']}"
        assert (await client.put(url, json={"expectedVersion": 1, "title": "A"})).status_code == 200
        stale = await client.put(url, json={"expectedVersion": 1, "title": "B"})
        problem = assert_problem(stale, 409, "version_conflict")
        assert problem["currentVersion"] == 2 and problem["expectedVersion"] == 1
        assert (await client.get(url)).json()["title"] == "A"


async def test_save_needs_a_base_version(api: LiveServer) -> None:
    async with api.user_client() as client:
        created = await create(client)
        url = f"/api/diagrams/{created['id']}"
        assert_problem(await client.put(url, json={"title": "x"}), 428, "precondition_required")
        disagree = await client.put(
            url, json={"title": "x", "expectedVersion": 1}, headers={"If-Match": '"2"'}
        )
        assert_problem(disagree, 422)
        assert_problem(await client.put(url, json={"expectedVersion": 1}), 422)


async def test_delete_is_soft_and_final(api: LiveServer) -> None:
    async with api.user_client() as client:
        created = await create(client)
        url = f"/api/diagrams/{created['id']}"
        assert (await client.delete(url)).status_code == 204
        assert_problem(await client.get(url), 404, "diagram_not_found")
        assert_problem(await client.get(url + "/xml"), 404)
        assert_problem(await client.delete(url), 404)
        listed = (await client.get("/api/diagrams")).json()
        assert created["id"] not in [d["id"] for d in listed["data"]]


async def test_xml_download_is_streamed_as_an_attachment(api: LiveServer) -> None:
    async with api.user_client() as client:
        created = await create(client, xml=A_1_0.decode())
        response = await client.get(f"/api/diagrams/{created['id']}/xml")
        assert response.status_code == 200
        assert response.content == A_1_0
        assert response.headers["content-type"].startswith("application/xml")
        assert (
            response.headers["content-disposition"]
            == f'attachment; filename="{created["id"]}.bpmn"'
        )
        assert response.headers["content-length"] == str(len(A_1_0))


async def test_list_pages_with_a_cursor_and_never_returns_xml(api: LiveServer) -> None:
    async with api.user_client() as client:
        ids = [(await create(client, title=f"Diagram {i}"))["id"] for i in range(7)]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/api/diagrams", params=params)).json()
            pages += 1
            assert all("xml" not in item for item in page["data"])
            seen += [item["id"] for item in page["data"]]
            assert page["hasMore"] == (page["nextCursor"] is not None)
            cursor = page["nextCursor"]
            if not cursor:
                break
        assert pages == 3
        assert seen == list(reversed(ids))
        assert_problem(
            await client.get("/api/diagrams", params={"cursor": "garbage"}), 422, "invalid_cursor"
        )
        assert_problem(await client.get("/api/diagrams", params={"limit": 0}), 422)
        assert_problem(await client.get("/api/diagrams", params={"limit": 101}), 422)


async def test_list_searches_titles_and_filters_projects(api: LiveServer) -> None:
    async with api.user_client() as client:
        await create(client, title="Order handling", projectId="p1")
        await create(client, title="Invoice approval", projectId="p2")
        await create(client, title="Order returns", projectId="p2")

        async def titles(**params: Any) -> list[str]:
            page = (await client.get("/api/diagrams", params=params)).json()
            return sorted(item["title"] for item in page["data"])

        assert await titles(q="order") == ["Order handling", "Order returns"]
        assert await titles(q="ord") == ["Order handling", "Order returns"]
        assert await titles(q="invoice appr") == ["Invoice approval"]
        assert await titles(q="zebra") == []
        assert await titles(projectId="p2") == ["Invoice approval", "Order returns"]
        assert await titles(q="order", projectId="p2") == ["Order returns"]
        # Search syntax in user input is not syntax: it neither breaks the query nor filters.
        assert len(await titles(q="'\"&|!:*() <->")) == 3
        assert await titles(q="order & !zebra") == []


async def test_viewers_read_but_cannot_write(api: LiveServer) -> None:
    org = unique_org()
    async with (
        api.user_client(org=org) as editor,
        api.user_client(org=org, user="vic", role="viewer") as viewer,
    ):
        created = await create(editor)
        url = f"/api/diagrams/{created['id']}"
        assert (await viewer.get(url)).status_code == 200
        assert_problem(
            await viewer.put(url, json={"expectedVersion": 1, "title": "x"}),
            403,
            "permission_denied",
        )
        assert_problem(await viewer.delete(url), 403)
        assert_problem(await viewer.post("/api/diagrams", json={"title": "x"}), 403)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "nul\u0000byte"}, "title"),
        ({"title": "ok", "projectId": ""}, "projectId"),
        ({"title": "ok", "colour": "red"}, "colour"),
        ({}, "title"),
    ],
)
async def test_bad_json_bodies_are_refused_with_the_field(
    api: LiveServer, body: dict[str, Any], field: str
) -> None:
    async with api.user_client() as client:
        problem = assert_problem(await client.post("/api/diagrams", json=body), 422)
        assert any(field in err["field"] for err in problem["errors"])
        assert (await client.get("/api/diagrams")).json()["data"] == []


@pytest.mark.parametrize(
    ("xml", "code"),
    [
        (b"<definitions", "xml_malformed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
            "xml_forbidden_construct",
        ),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "not_bpmn"),
    ],
)
async def test_bad_xml_is_refused_and_nothing_changes(
    api: LiveServer, xml: bytes, code: str
) -> None:
    async with api.user_client() as client:
        created = await create(client)
        url = f"/api/diagrams/{created['id']}"
        assert_problem(
            await client.post("/api/diagrams", json={"title": "t", "xml": xml.decode()}), 422, code
        )
        refused = await client.put(
            url, content=xml, headers={"Content-Type": "application/xml", "If-Match": '"1"'}
        )
        assert_problem(refused, 422, code)
        after = (await client.get(url)).json()
        assert after["version"] == 1
        assert [d["id"] for d in (await client.get("/api/diagrams")).json()["data"]] == [
            created["id"]
        ]


async def test_oversized_xml_gets_413_before_parsing(api: LiveServer) -> None:
    limit = api.settings.limits.max_xml_bytes
    async with api.user_client() as client:
        # Not even well-formed: a 413 proves the size was checked first.
        huge = b"<" * (limit + 1)
        response = await client.post(
            "/api/diagrams",
            params={"title": "big"},
            content=huge,
            headers={"Content-Type": "application/xml"},
        )
        assert_problem(response, 413)
        as_json = await client.post(
            "/api/diagrams", json={"title": "big", "xml": "<" * (limit + 1)}
        )
        assert_problem(as_json, 413, "xml_too_large")


async def test_unsupported_media_type(api: LiveServer) -> None:
    async with api.user_client() as client:
        response = await client.post(
            "/api/diagrams", content=b"title=x", headers={"Content-Type": "text/plain"}
        )
        assert_problem(response, 415, "unsupported_media_type")


async def test_json_xml_is_stored_in_the_encoding_it_declares(api: LiveServer) -> None:
    latin = A_1_0.decode().replace('name="Start Event"', 'name="Début"', 1)
    assert 'encoding="ISO-8859-1"' in latin and "Début" in latin
    async with api.user_client() as client:
        created = await create(client, xml=latin)
        stored = (await client.get(f"/api/diagrams/{created['id']}/xml")).content
        assert stored == latin.encode("iso-8859-1")
        assert (await client.get(f"/api/diagrams/{created['id']}")).json()["xml"] == latin
        greek = latin.replace("Début", "Ωμέγα")
        assert_problem(await client.post("/api/diagrams", json={"title": "t", "xml": greek}), 422)
        unknown = latin.replace("ISO-8859-1", "x-no-such-codec")
        assert_problem(await client.post("/api/diagrams", json={"title": "t", "xml": unknown}), 422)


async def test_routing_errors_are_problems(api: LiveServer) -> None:
    async with api.user_client() as client:
        assert_problem(await client.get("/api/nothing-here"), 404)
        assert_problem(await client.patch("/api/diagrams"), 405)
        assert_problem(await client.get("/api/diagrams/not-a-uuid"), 404)


async def test_tokens_are_checked(api: LiveServer) -> None:
    async with api.client() as anonymous:
        assert_problem(await anonymous.get("/api/diagrams"), 401, "unauthenticated")
        wrong = issue_user_token("another-secret-" + "y" * 40, user_id="u", org_id="o")
        bad = await anonymous.get("/api/diagrams", headers={"Authorization": f"Bearer {wrong}"})
        assert_problem(bad, 401)
        assert "Bearer" in bad.headers["www-authenticate"]
        expired = issue_user_token(
            TEST_SECRET, user_id="u", org_id="o", ttl_s=1, now=time.time() - 3600
        )
        problem = assert_problem(
            await anonymous.get("/api/diagrams", headers={"Authorization": f"Bearer {expired}"}),
            401,
        )
        assert "expired" in problem["detail"]
        room_like = jwt.encode(
            {"sub": "u", "org": "o", "exp": int(time.time()) + 60, "aud": "room"},
            TEST_SECRET,
            algorithm="HS256",
        )
        assert_problem(
            await anonymous.get("/api/diagrams", headers={"Authorization": f"Bearer {room_like}"}),
            401,
        )
        assert_problem(
            await anonymous.get("/api/diagrams", headers={"Authorization": "Basic abc"}), 401
        )


async def test_healthz_and_openapi(api: LiveServer) -> None:
    async with api.client() as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
        document = orjson.loads((await client.get("/openapi.json")).content)
        assert document["openapi"].startswith("3.")
        assert "/api/diagrams/{diagram_id}/versions/{rev}" in document["paths"]


async def test_restore_makes_an_old_version_the_next_one(api: LiveServer) -> None:
    async with api.user_client(user="ray") as client:
        created = await create(client, xml=A_1_0.decode())
        url = f"/api/diagrams/{created['id']}"
        changed = A_1_0.replace(b'name="Task 1"', b'name="Changed"')
        await client.put(
            url, content=changed, headers={"Content-Type": "application/xml", "If-Match": '"1"'}
        )

        assert_problem(await client.post(url + "/versions/1/restore"), 428)
        assert_problem(
            await client.post(url + "/versions/1/restore", json={"expectedVersion": 1}), 409
        )
        assert_problem(
            await client.post(url + "/versions/7/restore", json={"expectedVersion": 2}), 404
        )
        restored = await client.post(url + "/versions/1/restore", json={"expectedVersion": 2})
        assert restored.status_code == 200, restored.text
        assert restored.json()["version"] == 3
        assert (await client.get(url + "/xml")).content == A_1_0
        history = (await client.get(url + "/versions")).json()["data"]
        assert [v["rev"] for v in history] == [3, 2, 1]
        assert history[0]["message"] == "restore of version 1"
        assert history[0]["author"] == "ray"
        via_header = await client.post(url + "/versions/2/restore", headers={"If-Match": '"3"'})
        assert via_header.status_code == 200
        assert (await client.get(url + "/xml")).content == changed
