"""The load driver end to end: each scenario for about two seconds with a handful of
clients against a real server, through the real token flow."""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.config import BenchConfig
from bench.diagrams import chain_diagram
from bench.main import run_bench, summary
from tests.fixtures.live_server import TEST_SECRET, LiveServer, make_settings, run_server


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    async with run_server(make_settings(tmp_path_factory.mktemp("bench"))) as server:
        yield server


def _config(live: LiveServer, tmp_path: Path, scenario: str, **options: object) -> BenchConfig:
    return BenchConfig(
        scenario=scenario,
        target=live.url,
        secret=TEST_SECRET,
        out=tmp_path / f"{scenario}.json",
        drain_s=5,
        setup_timeout_s=60,
        **options,  # type: ignore[arg-type]
    )


async def _run(config: BenchConfig) -> dict[str, object]:
    log = io.StringIO()
    result = await run_bench(config, log=log)
    assert config.out is not None
    written = json.loads(config.out.read_text())
    assert written["scenario"] == config.scenario
    assert written["error_count"] == 0, written["error_examples"]
    assert written["latency_ms"]["count"] > 0
    assert written["latency_ms"]["p99"] is not None
    # The server runs in this process: the port's listener is found without --server-pid.
    assert written["server"]["pids"] == [os.getpid()]
    assert written["server"]["rss_mib"]["max"] is not None
    assert "secret" not in json.dumps(written).replace('"secret": "<given>"', "")
    assert "gen2" in written["driver"]["gc_pause_ms"]
    assert "conn" in log.getvalue()  # the live progress line
    assert "p99" in summary(result)
    return written


async def test_rooms(live: LiveServer, tmp_path: Path) -> None:
    config = _config(live, tmp_path, "rooms", clients=6, rooms=2, rate_hz=5, duration_s=2)
    result = await _run(config)
    # 6 editors x 5/s x 2 s, every one seen by its room's observer.
    assert result["throughput"]["edits_sent"] == 60  # type: ignore[index]
    assert result["latency_ms"]["count"] == 60  # type: ignore[index]
    assert result["connections"] == {"planned": 8, "open_at_end": 0}


async def test_broadcast(live: LiveServer, tmp_path: Path) -> None:
    config = _config(live, tmp_path, "broadcast", clients=5, sample=2, rate_hz=10, duration_s=2)
    result = await _run(config)
    # Every observer timed all 20 edits; the two sampled ones saw them in their documents.
    assert result["latency_ms"]["count"] == 5 * 20  # type: ignore[index]
    assert result["applied_latency_ms"]["count"] == 2 * 20  # type: ignore[index]


async def test_join(live: LiveServer, tmp_path: Path) -> None:
    diagram = tmp_path / "big.bpmn"
    diagram.write_bytes(chain_diagram(300))
    config = _config(live, tmp_path, "join", clients=8, duration_s=2, diagram=diagram)
    result = await _run(config)
    assert result["latency_ms"]["count"] == 8  # type: ignore[index]
    # 300 tasks, 299 flows and their process.
    assert result["details"]["elements"] == 600  # type: ignore[index]
    assert result["details"]["states_checked"] == 5  # type: ignore[index]


async def test_targets_off_loopback_are_refused(tmp_path: Path) -> None:
    from bench.target import TargetRefused

    config = BenchConfig(scenario="rooms", target="http://192.0.2.1:8000", secret=TEST_SECRET)
    with pytest.raises(TargetRefused):
        await run_bench(config, log=io.StringIO())
