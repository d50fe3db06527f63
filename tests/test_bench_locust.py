"""``bench/locustfile.py`` headless for a few seconds against a live server: REST users and
WebSocket editors both made requests, and none failed (locust's own CSV says so)."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.live_server import TEST_SECRET, LiveServer, make_settings, run_server

LOCUSTFILE = Path(__file__).resolve().parents[1] / "bench" / "locustfile.py"


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    async with run_server(make_settings(tmp_path_factory.mktemp("locust"))) as server:
        yield server


async def _locust(tmp_path: Path, env: dict[str, str], *argv: str) -> tuple[int, str]:
    """Run the locust file headless; (exit status, output). The server runs in this event
    loop: locust must run beside it, not block it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--csv", str(tmp_path / "run"), "--only-summary", "--loglevel", "WARNING", *argv,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()  # the run stops by itself; one that does not must not outlive the test
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_a_short_headless_run(live: LiveServer, tmp_path: Path) -> None:
    status, output = await _locust(
        tmp_path, {**os.environ, "AUTH_JWT_SECRET": TEST_SECRET},
        "-u", "6", "-r", "6", "-t", "8s", "--stop-timeout", "2", "--host", live.url,
        "--think", "0.2", "--diagrams", "4", "--ws-rooms", "1", "--ws-editors", "2",
        "--ws-rate", "4",
    )  # fmt: skip
    assert status == 0, output[-3000:]

    with (tmp_path / "run_stats.csv").open() as stats:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(stats)}
    total = rows[("", "Aggregated")]
    assert int(total["Request Count"]) > 20
    assert int(total["Failure Count"]) == 0, (tmp_path / "run_failures.csv").read_text()
    # Both kinds of user ran: REST operations, and editors that joined and saw each other.
    for key in [("GET", "list"), ("GET", "get"), ("WS", "connect"), ("WS", "edit fan-out")]:
        assert int(rows[key]["Request Count"]) > 0, key
    assert int(rows[("WS", "connect")]["Request Count"]) == 2


async def test_without_the_secret_users_fail_at_start(live: LiveServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AUTH_JWT_SECRET"}
    status, output = await _locust(
        tmp_path, env, "-u", "2", "-r", "2", "-t", "2s", "--host", live.url
    )
    assert status == 1, output[-3000:]
    assert "AUTH_JWT_SECRET" in output
    with (tmp_path / "run_failures.csv").open() as failures:
        assert [row["Name"] for row in csv.DictReader(failures)] == ["test start"]
