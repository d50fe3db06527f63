"""Org isolation: a user of another organization gets 404 from every diagram route."""

from __future__ import annotations

import httpx

from server.api.table import OPERATIONS
from tests.fixtures.live_server import LiveServer

DIAGRAM_ROUTES = [op for op in OPERATIONS if "{diagram_id}" in op.path]


def request_for(method: str, path: str) -> dict[str, object]:
    if method == "PUT":
        return {"json": {"expectedVersion": 1, "title": "stolen"}}
    return {}


async def test_every_diagram_route_answers_404_to_another_org(api: LiveServer) -> None:
    assert len(DIAGRAM_ROUTES) >= 7  # get, put, delete, xml, summary, versions, version
    async with api.user_client() as owner, api.user_client() as stranger:
        created = (await owner.post("/api/diagrams", json={"title": "Private"})).json()
        for op in DIAGRAM_ROUTES:
            path = op.path.replace("{diagram_id}", created["id"]).replace("{rev:int}", "1")
            response: httpx.Response = await stranger.request(
                op.method, path, **request_for(op.method, path)
            )
            assert response.status_code == 404, (op.method, op.path, response.status_code)
            assert response.json()["code"] == "diagram_not_found"
        listed = (await stranger.get("/api/diagrams")).json()["data"]
        assert created["id"] not in [d["id"] for d in listed]
        searched = (await stranger.get("/api/diagrams", params={"q": "Private"})).json()["data"]
        assert searched == []
        # The owner's diagram is untouched by all of that.
        mine = (await owner.get(f"/api/diagrams/{created['id']}")).json()
        assert mine["version"] == 1 and mine["title"] == "Private"
