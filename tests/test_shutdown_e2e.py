"""SIGTERM: the server stops, tells its clients to come back (1012), and writes open rooms.

The server runs as a real process and gets a real SIGTERM. Snapshots wait an hour after
edits pause, so the only thing that can write the edit as a version before the restart
is the shutdown itself; a version written by the restart's recovery (from the update
log) is marked ``recovered`` and does not count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.server_process import server_process
from tests.fixtures.ypeer import joined, room_token
from tests.test_snapshots_e2e import names_in
from tests.test_ws_e2e import new_diagram, rename, task_ids

_ONLY_SHUTDOWN_SNAPSHOTS = {
    "SNAPSHOT_IDLE_S": "3600",
    "SNAPSHOT_MAX_INTERVAL_S": "3600",
    "WS_UNLOAD_GRACE_S": "3600",
}


async def sigterm_mid_session(data_dir: Path, env: dict[str, str]) -> None:
    async with server_process(data_dir, env) as server:
        await server.start(**_ONLY_SHUTDOWN_SNAPSHOTS)
        async with server.client("ada") as client:
            diagram_id = await new_diagram(client)
            url, token = await room_token(client, diagram_id)
        async with (
            joined(url, diagram_id, token) as editor,
            joined(url, diagram_id, token) as observer,
        ):
            task = task_ids(editor)[0]
            await editor.edit(rename(task, "Written at shutdown"))
            # The observer has it: the server accepted the edit.
            await observer.wait_for(
                lambda: observer.elements[task]["attrs"].get("name") == "Written at shutdown"
            )
            await server.stop()  # SIGTERM, and wait for the process to end
            assert await editor.wait_closed() == 1012
            assert await observer.wait_closed() == 1012
        # uvicorn closed the sockets itself and nothing had to be cancelled after its grace.
        assert "timeout graceful shutdown exceeded" not in server.output()

        await server.start(**_ONLY_SHUTDOWN_SNAPSHOTS)
        async with server.client("ada") as client:
            versions = (await client.get(f"/api/diagrams/{diagram_id}/versions")).json()["data"]
            assert [v["rev"] for v in versions] == [2, 1]
            assert versions[0]["author"] == "ada"
            assert not versions[0]["metadata"].get("recovered"), versions[0]["metadata"]
            xml = (await client.get(f"/api/diagrams/{diagram_id}/xml")).content
            assert "Written at shutdown" in names_in(xml)


async def test_sigterm_closes_clients_with_1012_and_writes_open_rooms(tmp_path: Path) -> None:
    await sigterm_mid_session(tmp_path / "data", {})


@pytest.mark.postgres
@pytest.mark.redis
async def test_sigterm_with_redis_and_postgres(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    await sigterm_mid_session(
        tmp_path / "data", {"DATABASE_URL": postgres_dsn, "REDIS_URL": redis_url}
    )
