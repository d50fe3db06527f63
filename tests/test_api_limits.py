"""Write rate limits and the list cache, in-process and through Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.live_server import make_settings, run_server


@pytest.mark.parametrize("with_redis", [False, pytest.param(True, marks=pytest.mark.redis)])
async def test_writes_over_the_burst_get_429_with_retry_after(
    tmp_path: Path, request: pytest.FixtureRequest, with_redis: bool
) -> None:
    redis_url = request.getfixturevalue("redis_url") if with_redis else None
    settings = make_settings(tmp_path, redis_url=redis_url, write_burst=3, write_rate_per_s=0.01)
    async with run_server(settings) as live, live.user_client() as client:
        statuses = [
            (await client.post("/api/diagrams", json={"title": f"d{i}"})).status_code
            for i in range(5)
        ]
        assert statuses == [201, 201, 201, 429, 429]
        limited = await client.post("/api/diagrams", json={"title": "late"})
        assert limited.headers["content-type"].startswith("application/problem+json")
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["code"] == "rate_limited"
        # Reads are not limited, and the refused writes stored nothing.
        listed = (await client.get("/api/diagrams")).json()["data"]
        assert sorted(d["title"] for d in listed) == ["d0", "d1", "d2"]
        # Another user has a bucket of their own.
        async with live.user_client(user="other") as other:
            assert (await other.post("/api/diagrams", json={"title": "mine"})).status_code == 201


@pytest.mark.redis
async def test_a_client_never_reads_a_list_older_than_its_own_write(
    tmp_path: Path, redis_url: str
) -> None:
    async with (
        run_server(make_settings(tmp_path, redis_url=redis_url)) as live,
        live.user_client() as client,
    ):
        assert (await client.get("/api/diagrams")).json()["data"] == []  # now cached
        created = (await client.post("/api/diagrams", json={"title": "One"})).json()
        assert [d["id"] for d in (await client.get("/api/diagrams")).json()["data"]] == [
            created["id"]
        ]
        url = f"/api/diagrams/{created['id']}"
        await client.put(url, json={"expectedVersion": 1, "title": "Two"})
        assert [d["title"] for d in (await client.get("/api/diagrams")).json()["data"]] == ["Two"]
        await client.delete(url)
        assert (await client.get("/api/diagrams")).json()["data"] == []
