"""The optimistic rule under a real race: 50 saves based on the same version."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.fixtures.live_server import LiveServer
from tests.samples import REFERENCE

SAVERS = 50


async def test_fifty_concurrent_saves_give_one_winner(api: LiveServer) -> None:
    xml = (REFERENCE / "A.2.0.bpmn").read_text()
    async with api.user_client() as client:
        created = (await client.post("/api/diagrams", json={"title": "Race"})).json()
        url = f"/api/diagrams/{created['id']}"

        async def save(n: int) -> int:
            body = {"expectedVersion": 1, "title": f"Saver {n}", "xml": xml}
            return (await client.put(url, json=body)).status_code

        statuses = Counter(await asyncio.gather(*(save(n) for n in range(SAVERS))))
        assert statuses == {200: 1, 409: SAVERS - 1}

        after = (await client.get(url)).json()
        assert after["version"] == 2
        assert after["title"].startswith("Saver ")
        versions = (await client.get(url + "/versions")).json()["data"]
        assert [v["rev"] for v in versions] == [2, 1]
