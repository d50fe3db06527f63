"""``bpmn-collab bench memory``: the arithmetic of its figures, its options, and a tiny run
against ours and the reference y-websocket server, each started for the run."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from bench.config import BenchConfig, add_arguments, config_from_args
from bench.diagrams import chain_diagram
from bench.main import run_bench, summary
from bench.scenarios.memory import DOCUMENT_TASKS, Footprint, is_quiet, settled_kib
from bench.seed import seed_from_xml
from tests.test_bench_peers import node_packages  # noqa: F401 - the fixture: npm ci, once

# --- arithmetic -----------------------------------------------------------------------------


def test_a_footprint_is_the_difference_shared_out() -> None:
    grew = Footprint(baseline_kib=100_000, after_kib=130_000, count=1000)
    assert grew.delta_kib == 30_000
    assert grew.per_unit_kib == 30.0
    shrank = Footprint(baseline_kib=100_000, after_kib=99_000, count=10)
    assert shrank.per_unit_kib == -100.0  # reported as measured, not clamped
    assert Footprint(1, 2, 0).per_unit_kib is None


def test_the_settled_value_ignores_the_first_half_and_a_spike() -> None:
    assert settled_kib([10, 50, 100, 101, 100]) == 100  # median of [100, 101, 100]
    assert settled_kib([100, 100, 100, 900]) == 500  # median of [100, 900]: both count
    assert settled_kib([100, 100, 900, 100, 100]) == 100
    assert settled_kib([7]) == 7
    with pytest.raises(ValueError, match="no samples"):
        settled_kib([])


def test_quiet_means_little_cpu_over_the_last_window() -> None:
    # (time, CPU seconds used so far)
    busy = [(0.0, 0.0), (0.5, 0.25), (1.0, 0.5)]
    assert not is_quiet(busy, window_s=1.0, max_percent=5)
    calm = [(0.0, 0.0), (0.5, 0.5), (1.0, 0.5), (1.5, 0.52), (2.0, 0.53)]
    assert is_quiet(calm, window_s=1.0, max_percent=5)  # 0.03 s over the last 1 s
    assert not is_quiet(calm[:3], window_s=1.0, max_percent=5)  # 50 % over the only second
    assert not is_quiet([(0.0, 0.0), (0.5, 0.0)], window_s=1.0, max_percent=5)  # too short
    assert not is_quiet([(0.0, 0.0)], window_s=1.0, max_percent=5)


def test_the_document_has_a_thousand_elements() -> None:
    # chain_diagram(500): 500 tasks, 499 sequence flows, and their process.
    assert seed_from_xml(chain_diagram(DOCUMENT_TASKS)).elements == 1000


def _config(*argv: str) -> BenchConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser, "memory")
    return config_from_args(parser.parse_args(argv))


def test_memory_options() -> None:
    config = _config()
    assert (config.clients, config.rooms, config.documents) == (1000, 4, 50)
    assert config.duration_s == 3.0  # settle, not a window of load
    assert _config("--clients", "1001").rooms == 5  # at most 250 idle clients a room
    assert _config("--clients", "10", "--rooms", "1", "--documents", "0").documents == 0
    assert _config("--server", "hocuspocus").server == "hocuspocus"  # every kind
    with pytest.raises(ValueError, match="documents"):
        _config("--documents", "5000")
    # The other scenarios keep their defaults.
    parser = argparse.ArgumentParser()
    add_arguments(parser, "rooms")
    rooms = config_from_args(parser.parse_args([]))
    assert (rooms.duration_s, rooms.rooms) == (30.0, 10)


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ours", "y-websocket"])
async def test_memory_run(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind != "ours":
        request.getfixturevalue("node_packages")
    config = BenchConfig(
        scenario="memory",
        server=kind,
        spawn=True,
        clients=10,
        rooms=2,
        documents=2,
        duration_s=0.5,
        out=tmp_path / "memory.json",
        progress=False,
    )
    result = await run_bench(config, log=io.StringIO())
    written: dict[str, Any] = json.loads((tmp_path / "memory.json").read_text())
    assert written["error_count"] == 0, written["error_examples"]
    assert written["server_under_test"]["kind"] == kind
    memory = written["details"]["memory"]
    idle, documents = memory["idle"], memory["documents"]
    assert (idle["connections"], idle["rooms"]) == (10, 2)
    assert idle["delta_kib"] == idle["after_kib"] - idle["baseline_kib"]
    assert idle["per_connection_kib"] == round(idle["delta_kib"] / 10, 1)
    assert idle["half_kib"] is not None and idle["marginal_per_connection_kib"] is not None
    assert documents["documents"] == 2 and documents["elements_per_document"] == 1000
    # The documents' baseline is the idle measurement's end: nothing closed in between.
    assert documents["baseline_kib"] == idle["after_kib"]
    assert documents["per_document_mib"] == round(documents["delta_kib"] / 2 / 1024, 2)
    phases = {sample["phase"] for sample in memory["samples"]}
    assert phases == {
        "idle_baseline",
        "idle_half",
        "idle_after",
        "documents_half",
        "documents_after",
    }
    assert all(sample["rss_kib"] == sum(sample["by_pid"].values()) for sample in memory["samples"])
    # Warm-up room + one anchor per idle room, the idle clients, one client per document.
    assert written["connections"] == {"planned": 1 + 2 + 10 + 2, "open_at_end": 0}
    assert any("too few" in note for note in written["notes"])  # 10 is noise, and it says so
    text = summary(result)
    assert "KiB per connection" in text and "MiB per document" in text
