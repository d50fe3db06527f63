"""When a dependency breaks, the answer is still problem+json and nothing leaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import StoreUnavailable
from persistence.folder_blobs import FolderBlobStore
from persistence.models import DiagramSummary, Page
from persistence.sqlite_store import SqliteDiagramStore
from server.services import ServiceOverrides
from tests.fixtures.live_server import make_settings, run_server


class BrokenListStore(SqliteDiagramStore):
    """A real store whose listing fails: once with a bug, once with the database gone."""

    failures: list[Exception]

    async def list(self, org_id: str, **kwargs: Any) -> Page[DiagramSummary]:
        raise self.failures.pop(0)


async def test_a_bug_answers_500_problem_without_internals(tmp_path: Path) -> None:
    async with (
        FolderBlobStore(tmp_path / "blobs") as blobs,
        BrokenListStore(tmp_path / "db.sqlite", blobs=blobs, inline_max_bytes=1024) as store,
    ):
        store.failures = [
            RuntimeError("secret internal state"),
            StoreUnavailable("the database is unreachable"),
        ]
        overrides = ServiceOverrides(store=store, blobs=blobs)
        async with (
            run_server(make_settings(tmp_path), overrides) as live,
            live.user_client() as client,
        ):
            crashed = await client.get("/api/diagrams")
            assert crashed.status_code == 500
            assert crashed.headers["content-type"] == "application/problem+json"
            assert crashed.json()["code"] == "internal_error"
            assert "secret" not in crashed.text
            unavailable = await client.get("/api/diagrams")
            assert unavailable.status_code == 503
            assert unavailable.json()["code"] == "store_unavailable"
            assert unavailable.headers["retry-after"]
            # The server survived both and still serves.
            assert (await client.post("/api/diagrams", json={"title": "ok"})).status_code == 201
