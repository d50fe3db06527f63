"""Start-up recovery of logged updates no version holds (in-process, both log kinds)."""

from __future__ import annotations

from pathlib import Path

from pycrdt import Map

from server.documents import doc_from_state, room_key
from server.recovery import recover_unsaved_rooms
from tests.fixtures.live_server import make_settings, run_server
from tests.test_crash_recovery import add_task
from tests.test_snapshots_e2e import names_in
from tests.test_ws_e2e import new_diagram, org_of


async def test_recovery_writes_logged_updates_and_drops_logs_of_deleted_diagrams(
    tmp_path: Path,
) -> None:
    async with run_server(make_settings(tmp_path)) as live, live.user_client() as client:
        services = live.app.state.services
        kept, deleted = await new_diagram(client), await new_diagram(client)
        keys = {d: room_key(org_of(client), d, 0) for d in (kept, deleted)}
        for diagram_id, key in keys.items():
            doc, _ = await services.rooms_loader.open(key)  # fixes the first CRDT state
            before = doc.get_state()
            parent = next(iter(doc.get("elements", type=Map).values()))["parent"]
            add_task(parent, f"logged-{diagram_id[:8]}")(doc)
            await services.update_log.append(key, doc.get_update(before))
        assert (await client.delete(f"/api/diagrams/{deleted}")).status_code == 204

        recovered = await recover_unsaved_rooms(
            services.update_log, services.rooms_loader, services.snapshots, services.rooms
        )

        assert recovered == 1
        xml = (await client.get(f"/api/diagrams/{kept}/xml")).content
        assert f"logged-{kept[:8]}" in names_in(xml)
        assert await services.update_log.read_after(keys[deleted], None) == []
        record = await services.store.get(org_of(client), kept)
        assert record.log_position is not None and record.crdt_state is not None
        # The version's state holds the update and the log was trimmed up to it.
        assert f"logged-{kept[:8]}" in doc_from_state(record.crdt_state).get("elements", type=Map)
        assert await services.update_log.read_after(keys[kept], None) == []
        # Nothing left to do: a second pass writes nothing.
        assert (
            await recover_unsaved_rooms(
                services.update_log, services.rooms_loader, services.snapshots, services.rooms
            )
            == 0
        )
