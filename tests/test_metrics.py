"""/metrics: a real server's counters in the Prometheus text format, per app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.errors import Unavailable
from core.histogram import Histogram
from persistence.outbox import OutboxBacklog
from server import metrics
from tests.fixtures.live_server import LiveServer, make_settings, run_server
from tests.fixtures.ypeer import joined, room_token
from tests.test_snapshots_e2e import eventually
from tests.test_ws_e2e import expect_refusal, new_diagram, rename, task_ids

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    answer = await client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[("collab_" + name, frozenset(labels.items()))]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveServer]:
    # One server per test: the counters start at zero, so the tests can name exact values.
    async with run_server(make_settings(tmp_path / "data")) as server:
        yield server


async def test_a_live_session_shows_in_the_metrics(live: LiveServer) -> None:
    async with live.user_client(user="ada") as client, live.client() as anonymous:
        before = await scrape(anonymous)  # no authentication needed
        assert value(before, "ws_connections") == 0
        assert value(before, "rooms_open") == 0
        assert value(before, "rooms_fanout_seconds_count") == 0

        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        await expect_refusal(url, diagram_id, "not-a-jwt", 4401)
        async with joined(url, diagram_id, token) as editor, joined(url, diagram_id, token) as peer:
            task = task_ids(editor)[0]
            await editor.edit(rename(task, "Counted"))
            await peer.wait_for(lambda: peer.elements[task]["attrs"].get("name") == "Counted")
            during = await scrape(anonymous)

        assert value(during, "ws_connections") == 2
        assert value(during, "ws_connections_accepted_total") == 2
        assert value(during, "ws_refused_total", code="4401") == 1
        assert value(during, "rooms_open") == 1
        assert value(during, "rooms_opened_total") == 1
        assert value(during, "rooms_updates_received_total") == 1
        assert value(during, "rooms_updates_broadcast_total") == 1
        assert value(during, "journal_appended_total") == 1
        assert value(during, "ws_received_messages_total") > value(
            before, "ws_received_messages_total"
        )
        assert value(during, "ws_sent_bytes_total") > 0
        # The fan-out histogram: one observation, in cumulative buckets ending at +Inf.
        assert value(during, "rooms_fanout_seconds_count") == 1
        assert value(during, "rooms_fanout_seconds_bucket", le="+Inf") == 1
        assert value(during, "rooms_fanout_seconds_bucket", le="60.0") == 1
        assert value(during, "rooms_fanout_seconds_sum") > 0

        async def both_gone() -> bool:
            return value(await scrape(anonymous), "ws_connections") == 0

        await eventually(both_gone)
        after = await scrape(anonymous)
        assert value(after, "ws_clients_closed_total", code="1000") == 2


async def test_snapshot_and_outbox_metrics(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    settings.snapshot.idle_s = 0.1
    async with (
        run_server(settings) as live,
        live.user_client(user="ada") as client,
        live.client() as anonymous,
    ):
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token) as editor:
            await editor.edit(rename(task_ids(editor)[0], "Snapshotted"))

            async def written() -> bool:
                samples = await scrape(anonymous)
                return value(samples, "snapshots_total", outcome="written") == 1

            await eventually(written)
        samples = await scrape(anonymous)
        assert value(samples, "snapshot_duration_seconds_count") == 1
        assert value(samples, "snapshot_conflicts_total") == 0
        assert value(samples, "snapshots_total", outcome="failed") == 0
        # The create and the snapshot each wrote an outbox event (a thumbnail to draw).
        backlog = value(samples, "outbox_backlog_events", state="pending")
        completed = value(samples, "outbox_completed_total")
        assert backlog + completed >= 2
        assert value(samples, "outbox_backlog_events", state="parked") == 0

        async def drained() -> bool:
            samples = await scrape(anonymous)
            return value(samples, "outbox_backlog_events", state="pending") == 0

        await eventually(drained)
        assert value(await scrape(anonymous), "outbox_completed_total") >= 2


async def test_each_app_reports_its_own_state(tmp_path: Path) -> None:
    async with (
        run_server(make_settings(tmp_path / "one")) as one,
        run_server(make_settings(tmp_path / "two")) as two,
        one.user_client() as client,
        one.client() as scrape_one,
        two.client() as scrape_two,
    ):
        diagram_id = await new_diagram(client)
        url, token = await room_token(client, diagram_id)
        async with joined(url, diagram_id, token):
            assert value(await scrape(scrape_one), "ws_connections") == 1
            assert value(await scrape(scrape_two), "ws_connections") == 0
            assert value(await scrape(scrape_two), "rooms_open") == 0


async def test_bus_metrics_when_there_is_a_bus(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = live.app.state.services
    lag = Histogram()
    lag.observe(0.003)
    bus = SimpleNamespace(
        metrics=SimpleNamespace(published=3, received=2, reconnects=1, lag_seconds=lag)
    )
    async with live.client() as anonymous:
        monkeypatch.setattr(services, "bus", bus, raising=False)
        samples = await scrape(anonymous)
        assert value(samples, "bus_published_total") == 3
        assert value(samples, "bus_received_total") == 2
        assert value(samples, "bus_reconnects_total") == 1
        assert value(samples, "bus_lag_seconds_count") == 1
        assert value(samples, "bus_lag_seconds_bucket", le="0.001") == 0
        assert value(samples, "bus_lag_seconds_bucket", le="0.005") == 1

        monkeypatch.setattr(services, "bus", None, raising=False)
        samples = await scrape(anonymous)
        assert not any(name.startswith("collab_bus_") for name, _ in samples)


async def test_a_scrape_answers_without_the_backlog_when_the_outbox_cannot_tell(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = live.app.state.services.outbox
    assert outbox is not None

    async def down() -> OutboxBacklog:
        raise Unavailable("database unreachable")

    async def stuck() -> OutboxBacklog:
        await asyncio.Event().wait()
        raise AssertionError("never")

    async with live.client() as anonymous:
        assert ("collab_outbox_backlog_events", frozenset({("state", "pending")})) in (
            await scrape(anonymous)
        )
        monkeypatch.setattr(metrics, "BACKLOG_TIMEOUT_S", 0.05)
        for failing in (down, stuck):
            monkeypatch.setattr(outbox, "backlog", failing)
            samples = await scrape(anonymous)
            assert not any(name == "collab_outbox_backlog_events" for name, _ in samples)
            assert value(samples, "outbox_completed_total") >= 0
            assert value(samples, "ws_connections") == 0
