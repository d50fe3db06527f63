"""The ``rest`` scenario: the REST user's workflow on its own (a scripted server answers),
then the scenario end to end against a real server, with and without its WebSocket load,
and under a write limit it has to wait out."""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import statistics
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.config import BenchConfig, add_arguments, config_from_args
from bench.diagrams import chain_diagram
from bench.main import run_bench, summary
from bench.workflow import Call, Habits, Reply, Workflow, renamed
from bpmn.parse import parse
from tests.fixtures.live_server import TEST_SECRET, LiveServer, make_settings, run_server

XML = chain_diagram(5).decode()

# --- the workflow, sans I/O -----------------------------------------------------------------


def test_a_rename_changes_one_task_name_and_nothing_else() -> None:
    out = renamed(XML, random.Random(1), "Approve invoice u.1")
    assert out is not None
    before = re.findall(r'name="([^"]*)"', XML)
    after = re.findall(r'name="([^"]*)"', out)
    assert len(before) == len(after) == 5
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 1
    assert "Approve invoice u.1" in after
    parse(out.encode())  # still BPMN


def test_a_rename_finds_tasks_of_any_kind_and_prefix() -> None:
    xml = '<definitions><process><userTask id="a" name="Old" /><sendTask name="x"/></process>'
    out = renamed(xml, random.Random(0), "New")
    assert out is not None and out.count("New") == 1
    assert renamed("<definitions><process /></definitions>", random.Random(0), "New") is None


@pytest.mark.parametrize(
    ("op", "method", "conditional", "status", "outcome"),
    [
        ("get", "GET", False, 200, "ok"),
        ("get", "GET", True, 304, "not_modified"),
        ("get", "GET", False, 304, "error"),
        ("save", "PUT", False, 409, "conflict"),
        ("get", "GET", False, 409, "error"),
        ("save", "PUT", False, 429, "rate_limited"),
        ("list", "GET", False, 429, "error"),
        ("save", "PUT", False, 500, "error"),
        ("save", "PUT", False, 0, "error"),
    ],
)
def test_outcomes(op: str, method: str, conditional: bool, status: int, outcome: str) -> None:
    call = Call(op, method, "/x", 0.0, {}, conditional=conditional)
    assert call.outcome(status) == outcome


def test_think_times_are_exponential_with_the_mean_asked() -> None:
    workflow = Workflow("u", "t", ["d"], Habits(think_s=3.0), random.Random(7))
    draws = [workflow._think() for _ in range(20_000)]
    assert statistics.fmean(draws) == pytest.approx(3.0, rel=0.05)
    assert statistics.median(draws) == pytest.approx(3.0 * 0.693, rel=0.05)  # ln 2 * mean


class ScriptedServer:
    """Answers a workflow's calls like the API would, for one diagram; ``script`` overrides
    the status of the n-th save."""

    def __init__(self, saves: list[int] | None = None) -> None:
        self.version = 1
        self.xml = XML
        self.saves = list(saves or [])
        self.calls: list[Call] = []

    def answer(self, call: Call) -> Reply:
        self.calls.append(call)
        if call.path == "/api/diagrams":
            return Reply(200, orjson.dumps({"data": [{"id": "d1"}], "nextCursor": None}))
        if call.method == "PUT":
            status = self.saves.pop(0) if self.saves else 200
            if status == 200:
                body = orjson.loads(call.body or b"{}")
                assert body["expectedVersion"] == self.version
                self.version += 1
                self.xml = body["xml"]
                return Reply(200, orjson.dumps({"id": "d1", "version": self.version}))
            return Reply(status, b"{}", retry_after="3" if status == 429 else None)
        if call.headers.get("If-None-Match") == f'"{self.version}"':
            return Reply(304)
        body = {"id": "d1", "version": self.version, "xml": self.xml}
        return Reply(200, orjson.dumps(body))

    def pump(self, visit: Generator[Call, Reply, None]) -> None:
        call = next(visit)
        while True:
            try:
                call = visit.send(self.answer(call))
            except StopIteration:
                return


def _workflow(**habits: Any) -> Workflow:
    shares = {"next_page": 0.0, "search": 0.0, "reopen": 1.0, "summary": 0.0, "xml": 0.0}
    return Workflow("u1", "tok", ["d1"], Habits(**{**shares, **habits}), random.Random(3))


def test_a_visit_lists_gets_and_saves_with_the_version_it_read() -> None:
    server, workflow = ScriptedServer(), _workflow(save=1.0)
    server.pump(workflow.visit())
    assert [(c.op, c.method) for c in server.calls] == [
        ("list", "GET"),
        ("get", "GET"),
        ("save", "PUT"),
    ]
    assert all(c.headers["Authorization"] == "Bearer tok" for c in server.calls)
    assert server.version == 2
    assert workflow.counts["saved"] == 1
    # The next visit reopens it conditionally, gets a 304 (still current), and saves its
    # copy on version 2 (the scripted server checks expectedVersion).
    server.calls.clear()
    server.pump(workflow.visit())
    get = server.calls[1]
    assert get.conditional and get.headers["If-None-Match"] == '"2"'
    assert [c.op for c in server.calls] == ["list", "get", "save"]
    assert server.version == 3


def test_a_conflict_is_got_again_and_retried_at_once() -> None:
    server, workflow = ScriptedServer(saves=[409, 409]), _workflow(save=1.0)
    server.pump(workflow.visit())
    ops = [c.op for c in server.calls]
    assert ops == ["list", "get", "save", "get", "save", "get", "save"]
    retries = server.calls[3:]
    assert all(c.think_s == 0.0 for c in retries)
    assert not retries[0].conditional  # the latest, whole
    assert workflow.counts["conflict_retries"] == 2 and workflow.counts["saved"] == 1


def test_conflicts_that_keep_coming_are_given_up() -> None:
    server, workflow = ScriptedServer(saves=[409] * 10), _workflow(save=1.0, conflict_retries=2)
    server.pump(workflow.visit())
    assert [c.op for c in server.calls].count("save") == 3
    assert workflow.counts["saves_given_up"] == 1


def test_a_rate_limited_save_waits_as_told_and_retries() -> None:
    server, workflow = ScriptedServer(saves=[429, 429]), _workflow(save=1.0)
    server.pump(workflow.visit())
    saves = [c for c in server.calls if c.op == "save"]
    assert [c.think_s for c in saves[1:]] == [3.0, 3.0]  # Retry-After: 3
    assert saves[0].body == saves[1].body  # the same save again
    assert workflow.counts["rate_limit_waits"] == 2 and workflow.counts["saved"] == 1


class Unreachable(ScriptedServer):
    def answer(self, call: Call) -> Reply:
        if call.op == "get":
            self.calls.append(call)
            return Reply(0)  # as the drivers report a connection that failed
        return super().answer(call)


def test_a_failed_get_ends_the_visit() -> None:
    server, workflow = Unreachable(), _workflow(save=1.0)
    server.pump(workflow.visit())
    assert [c.op for c in server.calls] == ["list", "get"]  # and no save of nothing


def test_searches_and_pages_use_q_and_the_cursor() -> None:
    workflow = Workflow(
        "u", "t", ["d1"], Habits(search=1.0, next_page=1.0, save=0.0), random.Random(5)
    )
    visit = workflow.visit()
    first = next(visit)
    assert first.params is not None and len(first.params["q"]) >= 3
    page = orjson.dumps({"data": [{"id": "d1"}], "nextCursor": "c1", "hasMore": True})
    second = visit.send(Reply(200, page))
    assert second.params == {**first.params, "cursor": "c1"}


# --- configuration --------------------------------------------------------------------------


def _parse(*argv: str) -> BenchConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser, "rest")
    return config_from_args(parser.parse_args(list(argv)))


def test_rest_options_and_defaults() -> None:
    config = _parse()
    assert (config.clients, config.think_s, config.ws_editors, config.ws_rooms) == (100, 5, 20, 2)
    config = _parse("--users", "1000", "--think", "2", "--ws-editors", "0", "--ws-rate", "3")
    assert (config.clients, config.think_s, config.ws_editors, config.ws_rate_hz) == (1000, 2, 0, 3)
    refused = {
        "think time": ["--think", "0"],
        "ws rooms": ["--ws-editors", "1", "--ws-rooms", "2"],
        "diagrams": ["--diagrams", "0"],
    }
    for message, argv in refused.items():
        with pytest.raises(ValueError, match=message):
            _parse(*argv)


# --- end to end -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    async with run_server(make_settings(tmp_path_factory.mktemp("bench-rest"))) as server:
        yield server


async def _rest(live: LiveServer, tmp_path: Path, **options: Any) -> dict[str, Any]:
    config = BenchConfig(
        scenario="rest",
        target=live.url,
        secret=TEST_SECRET,
        out=tmp_path / "rest.json",
        drain_s=5,
        setup_timeout_s=60,
        **{"clients": 8, "think_s": 0.1, "duration_s": 2, "diagrams": 4, **options},
    )
    log = io.StringIO()
    result = await run_bench(config, log=log)
    assert "rest:" in summary(result)
    written: dict[str, Any] = json.loads((tmp_path / "rest.json").read_text())
    assert written["error_count"] == 0, written["error_examples"]
    rest = written["details"]["rest"]
    assert rest["users"] == 8 and rest["requests"] > 0
    assert rest["error_rate"] == 0
    assert written["latency_ms"]["count"] == rest["requests"]
    ops = rest["by_operation"]
    assert ops["list"]["count"] > 0 and ops["get"]["count"] > 0
    assert sum(written[f"rest_{op}_ms"]["count"] for op in ops) == rest["requests"]
    assert written["request_lag_ms"]["count"] == rest["requests"]
    assert any(e["samples"] for e in written["timeline"] if e["phase"] == "measure")
    return written


async def test_rest_beside_a_rooms_load(live: LiveServer, tmp_path: Path) -> None:
    result = await _rest(live, tmp_path, ws_editors=4, ws_rooms=2, ws_rate_hz=5)
    # 4 editors x 5/s x 2 s, each seen by its room's observer, timed apart from REST.
    assert result["ws_fanout_ms"]["count"] == 40
    assert result["ws_send_lag_ms"]["count"] == 40
    assert result["details"]["ws"]["editors"] == 4
    assert result["connections"] == {"planned": 6, "open_at_end": 0}
    # The REST window opens just after the editors' first edits: about all 40 fall in it.
    assert 36 <= result["throughput"]["edits_sent"] <= 40


async def test_rest_alone(live: LiveServer, tmp_path: Path) -> None:
    result = await _rest(live, tmp_path, ws_editors=0)
    assert "ws_fanout_ms" not in result
    assert result["details"]["ws"] == {"editors": 0}
    saves = result["details"]["rest"]["saves"]
    assert saves["saved"] > 0


async def test_a_write_limit_is_waited_out_not_counted_as_errors(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", write_burst=1, write_rate_per_s=0.5)
    async with run_server(settings) as limited:
        result = await _rest(limited, tmp_path, ws_editors=0, think_s=0.05, duration_s=3)
    rest = result["details"]["rest"]
    assert rest["outcomes"].get("rate_limited", 0) > 0
    assert rest["saves"]["rate_limit_waits"] > 0
    assert rest["by_operation"]["save"]["statuses"].get("429", 0) > 0
