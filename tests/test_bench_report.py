"""``bpmn-collab bench report``: real results of the driver (a tiny ``rooms`` and ``rest`` run
against a live server) plus copies of them at other loads and on other servers, turned into
the markdown table and PNG plots."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from bench.config import BenchConfig
from bench.main import run_bench
from bench.report import load_results, server_kind, write_report
from server.cli import main as cli
from tests.fixtures.live_server import TEST_SECRET, make_settings, run_server

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Results = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
async def real(tmp_path_factory: pytest.TempPathFactory) -> Results:
    """One small real result per scenario kind the report treats apart."""
    folder = tmp_path_factory.mktemp("bench-report")
    configs = {
        "rooms": {"clients": 4, "rooms": 2, "rate_hz": 5},
        "rest": {"clients": 4, "think_s": 0.2, "diagrams": 3, "ws_editors": 2, "ws_rooms": 1},
    }
    results: Results = {}
    async with run_server(make_settings(folder / "data")) as live:
        for scenario, options in configs.items():
            config = BenchConfig(
                scenario=scenario,
                target=live.url,
                secret=TEST_SECRET,
                out=folder / f"{scenario}.json",
                duration_s=2,
                drain_s=5,
                setup_timeout_s=60,
                progress=False,
                **options,  # type: ignore[arg-type]
            )
            await run_bench(config, log=io.StringIO())
            results[scenario] = json.loads((folder / f"{scenario}.json").read_text())
    return results


def _at(result: dict[str, Any], clients: int, server: str | None, scale: float) -> dict[str, Any]:
    """``result`` as if run with ``clients`` on ``server`` (None: a result from before peer
    servers, which names none), latencies scaled."""
    other = copy.deepcopy(result)
    other["params"]["clients"] = clients
    other.pop("server_under_test", None)
    other["params"].pop("server", None)
    if server is not None:
        other["server_under_test"] = {"kind": server, "version": "x"}
    for key in ("p50", "p95", "p99", "max"):
        other["latency_ms"][key] = round(other["latency_ms"][key] * scale, 3)
    for entry in other["timeline"]:
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            if entry[key] is not None:
                entry[key] *= scale
    return other


def _write(folder: Path, results: Results) -> list[Path]:
    paths = []
    for name, result in results.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(result))
        paths.append(path)
    return paths


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > 10_000, f"{path} is too small to hold a plot"
    pixels = imread(path)
    height, width = pixels.shape[:2]
    assert height > 300 and width > 500
    assert pixels.std() > 0.05  # not blank


def test_the_server_a_result_measured() -> None:
    assert server_kind({}) == "ours"
    assert server_kind({"server": {"pids": [1]}}) == "ours"
    assert server_kind({"params": {"server": "y-websocket"}}) == "y-websocket"
    assert server_kind({"server_under_test": {"kind": "hocuspocus"}}) == "hocuspocus"


def test_a_row_per_result_grouped_by_scenario(real: Results, tmp_path: Path) -> None:
    rooms = real["rooms"]
    paths = _write(
        tmp_path,
        {
            "rooms-4": rooms,
            "rooms-8": _at(rooms, 8, None, 1.5),
            "rooms-16": _at(rooms, 16, "ours", 3.0),
            "peer-4": _at(rooms, 4, "pycrdt-websocket", 2.0),
            "peer-16": _at(rooms, 16, "pycrdt-websocket", 4.0),
            "rest": real["rest"],
        },
    )
    out = tmp_path / "report"
    assert cli(["bench", "report", *map(str, paths), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    lines = report.splitlines()
    table = [line for line in lines if line.startswith(("| ours |", "| pycrdt-websocket |"))]
    rows = {line.split("`")[-2]: line for line in table}

    # rooms: ours at 4, 8 and 16 clients, then the peer; latencies as the files hold them.
    assert "## rooms" in report and "## rest" in report and "## REST operations" in report
    first = rows["rooms-4.json"].split(" | ")
    latency = rooms["latency_ms"]
    assert first[0] == "| ours" and first[1] == "4" and first[2] == "2" and first[3] == "5/s"
    assert first[4] == "2"  # duration
    for cell, key in zip(first[5:9], ("p50", "p95", "p99", "max"), strict=True):
        assert float(cell.replace(",", "")) == pytest.approx(latency[key], rel=0.01)
    assert "edits/s" in first[9] and first[10] == "0"
    assert rows["rooms-8.json"].startswith("| ours | 8 |")  # a result naming no server: ours
    assert rows["peer-16.json"].startswith("| pycrdt-websocket | 16 |")
    assert [line.split(" | ")[1] for line in table][:5] == ["4", "8", "16", "4", "16"]

    # rest: users and think time, the WebSocket load beside them, requests per second.
    rest = rows["rest.json"]
    assert "4 users (think 0.2 s) + 2 editors" in rest and "req/s" in rest
    assert "(REST 0.00 %)" in rest
    assert "rest_save_ms" in report and "ws_fanout_ms" in report

    # Plots: each result over time, and rooms by load (two servers); rest ran at one load.
    images = sorted(path.name for path in out.glob("*.png"))
    assert "by-load-rooms.png" in images and "by-load-rest.png" not in images
    assert len([name for name in images if name.startswith("timeline-")]) == 6
    for name in images:
        assert f"![{name}]({name})" in report
        _check_png(out / name)


def test_files_that_are_not_results_are_refused(tmp_path: Path, real: Results) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a result"):
        load_results([bad])
    assert cli(["bench", "report", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / "report.md").exists()


def test_a_result_without_measured_seconds_gets_a_row_and_no_plot(
    real: Results, tmp_path: Path
) -> None:
    empty = copy.deepcopy(real["rooms"])
    empty["timeline"] = [e for e in empty["timeline"] if e["phase"] != "measure"]
    report = write_report(_write(tmp_path, {"empty": empty}), tmp_path / "out")
    assert "`empty.json`" in report.read_text()
    assert not list((tmp_path / "out").glob("*.png"))


def test_results_at_one_client_count_are_plotted_by_rate(real: Results, tmp_path: Path) -> None:
    slow, fast = copy.deepcopy(real["rooms"]), _at(real["rooms"], 4, None, 2.0)
    slow["params"]["rate_hz"], fast["params"]["rate_hz"] = 1.0, 10.0
    out = tmp_path / "out"
    write_report(_write(tmp_path, {"slow": slow, "fast": fast}), out)
    _check_png(out / "by-load-rooms.png")
