"""``bpmn-collab bench sweep`` and ``bench compare``: the stop rule, the ratio table, the core
split, and short real runs (a two-step sweep against ours; a --quick comparison of ours and
the reference y-websocket server over two scenarios)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench.compare import ComparePlan
from bench.comparison import Context, compare_markdown, ratio, ratio_header, ratio_rows
from bench.config import BenchConfig
from bench.cores import CoreSplit, driver_pinned, split_cores
from bench.report import row_of
from bench.sweep import (
    SweepPlan,
    add_arguments,
    highest_sustained,
    plan_from_args,
    summarize_sweep,
    verdict,
)
from server.cli import main as cli
from tests.test_bench_peers import node_packages  # noqa: F401 - the fixture: npm ci, once

# --- the sweep's stop rule ------------------------------------------------------------------


def _step(p99: float | None, *, errors: int = 0, lag: float | None = 1.0) -> dict[str, Any]:
    return {
        "error_count": errors,
        "latency_ms": {"p99": p99},
        "send_lag_ms": {"p99": lag} if lag is not None else None,
    }


def test_a_step_is_sustained_only_without_errors_lag_or_a_high_p99() -> None:
    def judge(result: dict[str, Any]) -> str:
        return verdict(result, max_p99_ms=100, max_send_lag_ms=20)

    assert judge(_step(40.0)) == "sustained"
    assert judge(_step(100.0)) == "sustained"  # at the limit is within it
    assert judge(_step(100.1)) == "p99_over_limit"
    assert judge(_step(40.0, errors=1)) == "errors"
    assert judge(_step(40.0, lag=25.0)) == "driver_bound"
    assert judge(_step(400.0, lag=25.0)) == "driver_bound"  # the driver's lag explains it
    assert judge(_step(400.0, errors=3, lag=25.0)) == "errors"  # errors are errors
    assert judge(_step(None)) == "no_samples"
    assert judge(_step(40.0, lag=None)) == "sustained"  # a result without send lag


def test_the_highest_sustained_rate_is_the_last_before_the_first_failure() -> None:
    def steps(*verdicts: str) -> list[dict[str, Any]]:
        return [{"rate_hz": 0.5 * (i + 1), "verdict": v} for i, v in enumerate(verdicts)]

    assert highest_sustained(steps("sustained", "sustained", "p99_over_limit")) == 1.0
    assert highest_sustained(steps("errors")) is None
    assert highest_sustained(steps("sustained", "driver_bound")) == 0.5
    assert highest_sustained(steps("sustained", "sustained")) == 1.0
    assert highest_sustained([]) is None


def _sweep_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_sweep_plans() -> None:
    plan = plan_from_args(_sweep_args("--out", "x", "--rates", "0.5,1,2"))
    assert plan.base.spawn and plan.base.clients == 1000 and plan.base.rooms == 100
    assert [plan.step(i).rate_hz for i in range(3)] == [0.5, 1.0, 2.0]
    assert plan.step(0).out == Path("x/sweep-ours-0.5hz.json")
    assert plan.summary_path == Path("x/sweep-ours.json")
    given = plan_from_args(_sweep_args("--target", "http://127.0.0.1:9", "--server", "ours"))
    assert not given.base.spawn and given.base.target == "http://127.0.0.1:9"
    base = BenchConfig(scenario="rooms")
    for rates, message in (
        ((1.0, 1.0), "rise"),
        ((2.0, 1.0), "rise"),
        ((), "rates"),
        (tuple(float(r) for r in range(1, 30)), "rates"),
        ((1.0, 500.0), "rate"),
    ):
        with pytest.raises(ValueError, match=message):
            SweepPlan(base=base, rates=rates, folder=Path("x"))
    with pytest.raises(ValueError, match="--target"):
        plan_from_args(_sweep_args("--target", "http://127.0.0.1:9", "--server-cpus", "0"))


def test_a_driver_bound_stop_is_said_plainly() -> None:
    plan = SweepPlan(base=BenchConfig(scenario="rooms"), rates=(1.0, 2.0), folder=Path("x"))
    steps = [
        {"rate_hz": 1.0, "verdict": "sustained", "p99": 30, "errors": 0, "send_lag_p99_ms": 2},
        {"rate_hz": 2.0, "verdict": "driver_bound", "p99": 90, "errors": 0, "send_lag_p99_ms": 45},
    ]
    for step in steps:
        step["result"] = f"sweep-ours-{step['rate_hz']:g}hz.json"
    text = summarize_sweep(plan, steps, [])
    assert "highest rate sustained: 1 edits/s per editor" in text
    assert "driver-bound, the load generator and not the server is the limit" in text


# --- the ratio table ------------------------------------------------------------------------


def _result(
    p99: float, *, errors: int = 0, cpu: float = 50.0, rss: float = 100.0
) -> dict[str, Any]:
    return {
        "scenario": "rooms",
        "params": {"clients": 1000, "rooms": 100, "rate_hz": 1.0, "duration_s": 60},
        "latency_ms": {"p50": p99 / 10, "p95": p99 / 2, "p99": p99, "max": p99 * 2},
        "throughput": {"edits_per_s": 1000.0},
        "error_count": errors,
        "server": {"cpu_percent": {"mean": cpu}, "rss_mib": {"max": rss}},
    }


def test_ratio_cells() -> None:
    assert ratio(50, 100) == "0.50"
    assert ratio(3, 2) == "1.50"
    assert ratio(0, 0) == "1.00"
    assert ratio(5, 0) == "inf"
    assert ratio(None, 2) == ratio(2, None) == ratio("x", 2) == ratio(True, 1) == "-"


def test_ratio_rows_put_each_server_beside_ours() -> None:
    servers = ["ours", "y-websocket", "hocuspocus"]
    results = {
        "ours": _result(50.0, cpu=80.0, rss=250.0),
        "y-websocket": _result(100.0, errors=2, cpu=40.0, rss=125.0),
        # hocuspocus did not run: its column and ratio are "-".
    }
    assert ratio_header(servers) == [
        "metric",
        "better",
        "ours",
        "y-websocket",
        "hocuspocus",
        "ours / y-websocket",
        "ours / hocuspocus",
    ]
    rows = {row[0]: row for row in ratio_rows("rooms", results, servers)}
    assert rows["p99 ms"] == ["p99 ms", "lower", "50", "100", "-", "0.50", "-"]
    assert rows["max ms"][5] == "0.50"
    assert rows["throughput edits/s"][1:] == ["higher", "1,000", "1,000", "-", "1.00", "-"]
    assert rows["errors"][2:6] == ["0", "2", "-", "0.00"]
    assert rows["server CPU mean %"][5] == "2.00"
    assert rows["server RSS max MiB"][5] == "2.00"
    assert list(rows) == [
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "throughput edits/s",
        "errors",
        "server CPU mean %",
        "server RSS max MiB",
    ]
    # Without ours there is nothing to divide by: no ratio columns.
    assert ratio_header(["y-websocket"]) == ["metric", "better", "y-websocket"]
    assert (
        len(ratio_rows("rooms", {"y-websocket": results["y-websocket"]}, ["y-websocket"])[0]) == 3
    )


def test_memory_and_sweep_rows() -> None:
    def memory(kib: float, mib: float) -> dict[str, Any]:
        figures = {"idle": {"per_connection_kib": kib}, "documents": {"per_document_mib": mib}}
        return {"details": {"memory": figures}, "error_count": 0}

    rows = ratio_rows(
        "memory", {"ours": memory(30, 8), "y-websocket": memory(60, 4)}, ["ours", "y-websocket"]
    )
    by_name = {row[0]: row for row in rows}
    assert by_name["KiB per idle connection"] == [
        "KiB per idle connection",
        "lower",
        "30",
        "60",
        "0.50",
    ]
    assert by_name["MiB per open 1,000-element document"][2:] == ["8", "4", "2.00"]

    def sweep(best: float | None, stop: str | None) -> dict[str, Any]:
        return {"highest_sustained_rate_hz": best, "stopped_by": stop, "steps": [{}] * 3}

    rows = ratio_rows(
        "sweep",
        {"ours": sweep(2.0, "p99_over_limit"), "hocuspocus": sweep(1.0, "errors")},
        ["ours", "hocuspocus"],
    )
    by_name = {row[0]: row for row in rows}
    assert by_name["highest sustained rate, edits/s per editor"][1:] == ["higher", "2", "1", "2.00"]
    assert by_name["stopped by"] == ["stopped by", "-", "p99_over_limit", "errors", "-"]
    assert by_name["steps run"][2:] == ["3", "3", "-"]
    assert ratio_rows("sweep", {"ours": sweep(None, "errors")}, ["ours"])[0][2] == "-"


def test_compare_markdown_states_how_and_lists_skips() -> None:
    context = Context(
        date="2026-12-04T00:00:00+00:00",
        command="bpmn-collab bench compare --out x",
        machine={
            "nproc": 2,
            "cpu_model": "AMD EPYC",
            "ram_gib": 23.5,
            "kernel": "6",
            "python": "3.11",
        },
        pinning="server pinned to core(s) 0",
        versions={"ours": {"version": "0.1.0", "packages": {"commit": "abc"}}},
    )
    text = compare_markdown(
        {"rooms": {"ours": _result(50.0), "y-websocket": _result(100.0)}},
        scenarios=["rooms", "rest"],
        servers=["ours", "y-websocket"],
        files={"rooms": {"ours": "rooms-ours.json", "y-websocket": "rooms-y-websocket.json"}},
        context=context,
        notes=["rest skipped on y-websocket: it needs our REST API"],
    )
    assert "- command: `bpmn-collab bench compare --out x`" in text
    assert "- cores: server pinned to core(s) 0" in text
    assert "| ours | 0.1.0 | commit abc |" in text
    assert "Load: 1000 editors / 100 rooms / 1 edit/s each, 60 s." in text
    assert "| p99 ms | lower | 50 | 100 | 0.50 |" in text
    assert "## rest\n\nNo server ran it" in text
    assert "- rest skipped on y-websocket: it needs our REST API" in text
    assert "ours `rooms-ours.json`, y-websocket `rooms-y-websocket.json`" in text


def test_the_report_shows_memory_figures_and_keeps_sweep_steps_apart() -> None:
    memory = {
        "scenario": "memory",
        "params": {"clients": 1000, "rooms": 4, "documents": 50, "duration_s": 3},
        "details": {
            "memory": {
                "idle": {"per_connection_kib": 28.4},
                "documents": {"per_document_mib": 7.25},
            }
        },
        "latency_ms": {},
    }
    row = row_of(memory, "memory-ours.json")
    assert (row.scenario, row.clients, row.rate) == ("memory", "1000 idle + 50 documents", "-")
    assert row.throughput == "28.4 KiB/connection; 7.25 MiB/document"
    step = {**_result(40.0), "sweep": {"step": 0, "rate_hz": 1.0, "summary": "sweep-ours.json"}}
    assert row_of(step, "sweep-ours-1hz.json").scenario == "rooms-sweep"
    assert row_of(_result(40.0), "rooms-ours.json").scenario == "rooms"


# --- cores and the plan ---------------------------------------------------------------------


def test_cores_are_split_between_server_and_driver() -> None:
    assert split_cores({0, 1}) == CoreSplit((0,), (1,))
    assert split_cores([3, 1, 2, 0]) == CoreSplit((0, 1), (2, 3))
    assert split_cores({5, 6, 7}) == CoreSplit((5,), (6, 7))
    single = split_cores({0})
    assert not single.pinned and "not pinned" in single.describe()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two cores")
def test_the_driver_pins_itself_and_is_restored() -> None:
    before = os.sched_getaffinity(0)
    driver = max(before)
    with driver_pinned((driver,)):
        assert os.sched_getaffinity(0) == {driver}
    assert os.sched_getaffinity(0) == before
    with driver_pinned(()):
        assert os.sched_getaffinity(0) == before


def test_compare_plans() -> None:
    plan = ComparePlan(folder=Path("out"))
    assert plan.scenarios == ("rooms", "broadcast", "join", "memory", "sweep")
    assert plan.duration == 60.0
    assert not plan.runs("rest", "y-websocket") and plan.runs("rest", "ours")
    assert plan.runs("memory", "hocuspocus") and plan.runs("sweep", "pycrdt-websocket")
    cores = CoreSplit((0,), (1,))
    rooms = plan.config("rooms", "y-websocket", cores)
    assert (rooms.clients, rooms.rooms, rooms.rate_hz, rooms.duration_s) == (1000, 100, 1.0, 60.0)
    assert (
        rooms.spawn
        and rooms.server_cpus == (0,)
        and rooms.out == Path("out/rooms-y-websocket.json")
    )
    broadcast = plan.config("broadcast", "ours", cores)
    assert (broadcast.clients, broadcast.rate_hz, broadcast.sample) == (1000, 10.0, 50)
    join = plan.config("join", "ours", cores)
    assert join.clients == 200 and join.diagram is None  # the largest corpus file
    memory = plan.config("memory", "ours", cores)
    assert (memory.clients, memory.documents) == (1000, 50)
    sweep = plan.sweep("hocuspocus", CoreSplit((), ()))
    assert sweep.base.clients == 1000 and sweep.base.server_cpus == () and sweep.rates[0] == 0.25
    quick = ComparePlan(folder=Path("q"), servers=("ours",), scenarios=("join",), quick=True)
    assert quick.duration == 2.0
    assert quick.config("join", "ours", cores).diagram == Path("q/quick-join.bpmn")
    assert quick.command == (
        "bpmn-collab bench compare --out q --servers ours --scenarios join --duration 2 --quick"
    )
    with pytest.raises(ValueError, match="unknown server: nginx"):
        ComparePlan(folder=Path("x"), servers=("ours", "nginx"))
    with pytest.raises(ValueError, match="each scenario once"):
        ComparePlan(folder=Path("x"), scenarios=("rooms", "rooms"))
    with pytest.raises(ValueError, match="at least one"):
        ComparePlan(folder=Path("x"), servers=())


# --- end to end -----------------------------------------------------------------------------


def test_a_two_step_sweep_against_ours(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    argv = ["bench", "sweep", "--server", "ours", "--editors", "4", "--rooms", "2"]
    argv += ["--rates", "1,2", "--duration", "1", "--out", str(out), "--quiet"]
    # Generous limits: what is tested is the sweep, not a fresh server's first second on a
    # machine other tests load too (the stop rule has its own tests above).
    assert cli([*argv, "--max-p99-ms", "30000", "--max-send-lag-ms", "30000"]) == 0
    summary = json.loads((out / "sweep-ours.json").read_text())
    assert [step["rate_hz"] for step in summary["steps"]] == [1.0, 2.0]
    assert [step["verdict"] for step in summary["steps"]] == ["sustained", "sustained"]
    assert summary["highest_sustained_rate_hz"] == 2.0 and summary["stopped_by"] is None
    assert summary["server_under_test"]["spawned"] is True
    for step, rate in zip(summary["steps"], (1.0, 2.0), strict=True):
        result = json.loads((out / step["result"]).read_text())
        assert result["params"]["rate_hz"] == rate and result["error_count"] == 0
        assert result["sweep"] == {
            "step": int(rate) - 1,
            "rate_hz": rate,
            "summary": "sweep-ours.json",
        }
        # 4 editors x rate x 1 s, every one observed.
        assert result["latency_ms"]["count"] == 4 * rate
    assert "every rate was sustained" in summary["text"]


@pytest.mark.usefixtures("node_packages")
def test_a_quick_comparison_of_ours_and_a_peer(tmp_path: Path) -> None:
    out = tmp_path / "compare"
    before = os.sched_getaffinity(0)
    argv = ["bench", "compare", "--out", str(out), "--servers", "ours,y-websocket"]
    assert cli([*argv, "--scenarios", "rooms,join", "--quick", "--duration", "1", "--quiet"]) == 0
    assert os.sched_getaffinity(0) == before  # the driver's cores are given back
    names = {path.name for path in out.iterdir()}
    for scenario in ("rooms", "join"):
        for server in ("ours", "y-websocket"):
            result = json.loads((out / f"{scenario}-{server}.json").read_text())
            assert result["error_count"] == 0, result["error_examples"]
            assert result["server_under_test"]["kind"] == server
            assert result["server_under_test"]["spawned"] is True
    assert {"report.md", "compare.md", "quick-join.bpmn"} <= names
    report = (out / "report.md").read_text()
    assert "## rooms" in report and "## join" in report
    compare = (out / "compare.md").read_text()
    assert "--servers ours,y-websocket --scenarios rooms,join --duration 1 --quick" in compare
    assert "| metric | better | ours | y-websocket | ours / y-websocket |" in compare
    rows = [line for line in compare.splitlines() if line.startswith("| p99 ms | lower |")]
    assert len(rows) == 2  # rooms and join
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[4]) == pytest.approx(
            float(cells[2].replace(",", "")) / float(cells[3].replace(",", "")), rel=0.05
        )
    assert "| joins/s | higher |" in compare
    if len(before) >= 2:
        assert "server pinned to core(s)" in compare
        assert "ours' background worker process" in compare  # a note on what pinning costs
