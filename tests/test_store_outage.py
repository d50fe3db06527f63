"""Postgres gone for 30 s under live editing: editing goes on, nothing is lost.

Postgres sits behind a TCP proxy that the test cuts (connections reset, connects
refused) and restores, so the app sees the database stop and come back while the
real server, shared with other tests, keeps running. ``OUTAGE_S`` shortens the
outage for a quick local run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.fixtures.live_server import make_settings, run_server
from tests.fixtures.tcp_proxy import tcp_proxy
from tests.fixtures.ypeer import joined, room_token
from tests.test_crash_recovery import type_until_stopped, typed
from tests.test_snapshots_e2e import eventually, names_in, version_of
from tests.test_ws_e2e import new_diagram, task_ids

OUTAGE_S = float(os.environ.get("OUTAGE_S", "30"))


@pytest.mark.postgres
@pytest.mark.redis
async def test_postgres_down_under_live_editing_loses_nothing(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    parts = urlsplit(postgres_dsn)
    assert parts.hostname is not None
    async with tcp_proxy(parts.hostname, parts.port or 5432) as proxy:
        netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
        proxied = urlunsplit(parts._replace(netloc=f"{netloc}:{proxy.port}"))
        settings = make_settings(tmp_path, database_url=proxied, redis_url=redis_url)
        settings.snapshot.idle_s = 0.3
        settings.snapshot.max_interval_s = 2
        async with run_server(settings) as live, live.user_client() as client:
            diagram_id = await new_diagram(client)
            url, token = await room_token(client, diagram_id)
            snapshots = live.app.state.services.snapshots
            async with joined(url, diagram_id, token) as ann, joined(url, diagram_id, token) as bob:
                parent = str(ann.elements[task_ids(ann)[0]]["parent"])
                sent: list[str] = []
                typing = asyncio.create_task(type_until_stopped(ann, parent, sent))
                await eventually(lambda: _past_version(client, diagram_id, 1))

                await proxy.cut()
                started = time.monotonic()
                seen_at_cut = len(typed(bob))
                # Editing goes on: the other editor keeps receiving edits.
                await bob.wait_for(lambda: len(typed(bob)) >= seen_at_cut + 50, timeout_s=20)
                assert (await client.get(f"/api/diagrams/{diagram_id}")).status_code == 503
                await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
                assert snapshots.metrics.failed > 0
                # Backoff, not a retry per keystroke.
                assert snapshots.metrics.failed < OUTAGE_S * 4
                await proxy.restore()

                typing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await typing
                everything = set(sent)
                await bob.wait_for(lambda: everything <= typed(bob), timeout_s=20)
                assert ann.close_code is None and bob.close_code is None

                async def all_in_xml() -> bool:
                    answer = await client.get(f"/api/diagrams/{diagram_id}/xml")
                    return answer.status_code == 200 and everything <= names_in(answer.content)

                await eventually(all_in_xml, timeout_s=30)


async def _past_version(client: httpx.AsyncClient, diagram_id: str, version: int) -> bool:
    return await version_of(client, diagram_id) > version
