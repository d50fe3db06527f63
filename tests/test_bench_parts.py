"""The load benchmark's pure parts: latency stamps, percentiles, /proc parsing, the loopback
rule, the edits, and the configuration's bounds."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc, Map

from bench.config import BenchConfig, add_arguments, config_from_args
from bench.diagrams import chain_diagram
from bench.edits import EditingDoc, find_targets, moved
from bench.procstat import (
    ProcSampler,
    find_listening_pids,
    parse_cpu_ticks,
    parse_listening_inodes,
    parse_parent_pid,
    parse_rss_kib,
    with_descendants,
)
from bench.stamp import Stamp, read_stamp, stamp_name
from bench.stats import Recorder, percentile, summarize
from bench.target import TargetRefused, UserTokens, check_loopback, target_port
from bpmn.document import load
from bpmn.parse import parse

naturals = st.integers(min_value=0, max_value=2**63)

# --- stamps ---------------------------------------------------------------------------------


@given(st.text(max_size=40), naturals, naturals, naturals)
def test_a_stamp_survives_any_label(label: str, editor: int, seq: int, sent_ns: int) -> None:
    stamp = Stamp(editor, seq, sent_ns)
    assert read_stamp(stamp_name(label, stamp)) == stamp


@pytest.mark.parametrize(
    "name",
    [None, 42, "", "Review order", "Review order ~", "x ~1.2", "x ~1.2.3.4", "x ~1.-2.3",
     "x ~+1.2.3", "x ~1_0.2.3", "x ~ 1.2.3", "x ~1.2.3 ", "x ~1.G.3"],
)  # fmt: skip
def test_names_no_benchmark_wrote_have_no_stamp(name: object) -> None:
    assert read_stamp(name) is None


def test_a_stamp_is_short_hex() -> None:
    name = stamp_name("Approve invoice", Stamp(17, 42, 1_234_567_890_123))
    assert name == "Approve invoice ~11.2a.11f71fb04cb"


def test_negative_stamps_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        stamp_name("x", Stamp(-1, 0, 0))


# --- percentiles ----------------------------------------------------------------------------


def test_nearest_rank_percentiles() -> None:
    ordered = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(ordered, 50) == 50
    assert percentile(ordered, 95) == 95
    assert percentile(ordered, 99) == 99
    assert percentile(ordered, 100) == 100
    assert percentile([7.0], 99) == 7
    assert percentile([1.0, 2.0], 50) == 1  # rank ceil(0.5 * 2) = 1: no interpolation


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 0)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
def test_summaries_are_ordered_and_taken_from_the_samples(samples: list[float]) -> None:
    summary = summarize(samples)
    assert summary["count"] == len(samples)
    assert summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"]
    assert summary["max"] == round(max(samples), 3)


def test_an_empty_summary_says_so() -> None:
    assert summarize([]) == {
        "count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None,
    }  # fmt: skip


def test_the_recorder_keeps_everything_and_hands_out_windows() -> None:
    recorder = Recorder()
    recorder.add(1.0)
    recorder.add(2.0)
    assert recorder.take_window() == [1.0, 2.0]
    recorder.add(3.0)
    assert recorder.take_window() == [3.0]
    assert recorder.take_window() == []
    assert recorder.samples == [1.0, 2.0, 3.0]


# --- /proc ----------------------------------------------------------------------------------

STAT = "4242 (uvicorn) worker) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1234 567 0 0 20 0 9 0"
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:223D 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 91001 1
   1: 0100007F:223D 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 91002 1
   2: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 91003 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:223D 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 91004 1
"""  # noqa: E501


def test_cpu_ticks_are_counted_after_the_command_name() -> None:
    # The command name holds a space and a parenthesis: fields are counted after the last ")".
    assert parse_cpu_ticks(STAT) == 1234 + 567


def test_a_stat_line_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="stat"):
        parse_cpu_ticks("no parenthesis here")


def test_rss_comes_from_vmrss() -> None:
    assert parse_rss_kib("Name:\tpython\nVmPeak:\t 9000 kB\nVmRSS:\t  81234 kB\n") == 81234
    assert parse_rss_kib("Name:\tzombie\nState:\tZ\n") is None


def test_listening_sockets_are_found_by_port_in_both_tables() -> None:
    assert parse_listening_inodes(TCP, 8765) == {91001}  # not the established one
    assert parse_listening_inodes(TCP, 8000) == {91003}
    assert parse_listening_inodes(TCP6, 8765) == {91004}
    assert parse_listening_inodes(TCP, 1) == set()


def test_the_processes_holding_the_listening_socket_are_found(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP)
    (tmp_path / "net" / "tcp6").write_text(TCP6)
    for pid, inode in ((100, 91001), (101, 91004), (102, 91003)):
        (tmp_path / str(pid) / "fd").mkdir(parents=True)
        os.symlink(f"socket:[{inode}]", tmp_path / str(pid) / "fd" / "3")
        os.symlink("/dev/null", tmp_path / str(pid) / "fd" / "0")
    (tmp_path / "self").mkdir()
    assert find_listening_pids(8765, proc=tmp_path) == [100, 101]


def test_descendants_are_found_through_parent_pids(tmp_path: Path) -> None:
    tree = {100: 1, 101: 100, 102: 101, 103: 1, 104: 103, 105: 100}
    for pid, parent in tree.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (py (x)) S {parent} 1 1 0 -1 4194560")
    (tmp_path / "self").mkdir()
    assert with_descendants([100], proc=tmp_path) == [100, 101, 102, 105]
    assert with_descendants([104, 101], proc=tmp_path) == [101, 102, 104]
    assert parse_parent_pid("7 (a) b) S 42 7 7") == 42


def test_the_sampler_counts_child_processes(tmp_path: Path) -> None:
    import subprocess
    import sys

    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            with_children = ProcSampler([os.getpid()]).sample()
            alone = ProcSampler([os.getpid()], descendants=False).sample()
            assert with_children.alive >= alone.alive + 1
            assert with_children.rss_mib is not None and alone.rss_mib is not None
            assert with_children.rss_mib > alone.rss_mib
        finally:
            child.kill()


def test_the_sampler_reads_this_process_and_skips_vanished_ones() -> None:
    sampler = ProcSampler([os.getpid(), 2**22 + 12345], descendants=False)
    first = sampler.sample()
    assert first.cpu_percent is None  # no previous sample yet
    assert first.alive == 1
    assert first.rss_mib is not None and first.rss_mib > 1
    assert sampler.sample().cpu_percent is not None
    assert sampler.cpu_seconds() > 0


# --- the target -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8765", "http://localhost:8000/", "ws://[::1]:9/collab", "http://127.0.0.2"],
)
def test_loopback_targets_are_accepted(url: str) -> None:
    assert check_loopback(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8000",
        "http://example.com",
        "ws://192.168.1.2/collab",
        "http://[2001:db8::1]/",
        "ftp://127.0.0.1/",
        "127.0.0.1:8000",
        "http://localhost.example.com/",
    ],
)
def test_other_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_loopback(url)


def test_target_ports() -> None:
    assert target_port("http://127.0.0.1:8765") == 8765
    assert target_port("http://localhost") == 80
    assert target_port("https://localhost") == 443


def test_tokens_are_minted_per_user_or_shared() -> None:
    minted = UserTokens(secret="s" * 40, token=None, org="bench-x")
    assert minted.distinct_users
    assert minted.for_user("a") == minted.for_user("a") != minted.for_user("b")
    given_token = UserTokens(secret=None, token="given", org="bench-x")
    assert given_token.for_user("a") == given_token.for_user("b") == "given"
    with pytest.raises(TargetRefused, match="--token"):
        UserTokens(secret=None, token=None, org="bench-x")


# --- edits ----------------------------------------------------------------------------------


def _state(tasks: int) -> bytes:
    return load(parse(chain_diagram(tasks))).get_update()


def test_targets_are_the_tasks_with_shapes() -> None:
    doc: Doc[Any] = Doc()
    doc.apply_update(_state(12))
    targets = find_targets(doc)
    assert len(targets) == 12
    assert targets[0].task == "Task_0" and targets[0].shape == "Task_0_di"
    assert targets[1].home == (150.0, 0.0, 100.0, 80.0)


def test_moves_walk_200_places_never_the_same_twice_in_a_row() -> None:
    home = (150.0, 0.0, 100.0, 80.0)
    places = [moved(home, i) for i in range(400)]
    assert len(set(places[:200])) == 200
    assert places[200:] == places[:200]
    assert all(a != b for a, b in zip([home, *places], places, strict=False))
    assert all(p[2:] == (100.0, 80.0) for p in places)  # a move never resizes


def test_edits_are_updates_another_document_shows() -> None:
    state = _state(3)
    editor = EditingDoc(state)
    other: Doc[Any] = Doc()
    other.apply_update(state)
    stamp = Stamp(3, 0, 123)
    other.apply_update(editor.rename("Task_1", stamp))
    other.apply_update(editor.move("Task_1_di", (160.0, 0.0, 100.0, 80.0)))
    elements, di = other.get("elements", type=Map), other.get("di", type=Map)
    assert read_stamp(elements["Task_1"]["attrs"]["name"]) == stamp
    assert di["Task_1_di"]["bounds"] == [160.0, 0.0, 100.0, 80.0]


# --- configuration --------------------------------------------------------------------------


def _config(scenario: str, *argv: str) -> BenchConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser, scenario)
    return config_from_args(parser.parse_args(argv))


def test_scenario_defaults_and_aliases() -> None:
    assert _config("rooms").rate_hz == 1.0
    broadcast = _config("broadcast", "--observers", "1000")
    assert (broadcast.rate_hz, broadcast.clients, broadcast.rooms) == (10.0, 1000, 1)
    assert _config("join", "--clients", "200").clients == 200
    assert _config("rooms", "--editors", "1000", "--rooms", "100").rooms == 100


@pytest.mark.parametrize(
    "argv",
    [
        ("rooms", "--editors", "0"),
        ("rooms", "--editors", "20000"),
        ("rooms", "--editors", "10", "--rooms", "11"),
        ("rooms", "--rate", "-1"),
        ("rooms", "--duration", "100000"),
    ],
)
def test_unbounded_runs_are_refused(argv: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="must be"):
        _config(*argv)


def test_the_result_never_holds_the_secret_or_token() -> None:
    public = BenchConfig(scenario="rooms", secret="s" * 40, token="t.t.t").public()
    assert public["secret"] == "<given>" and public["token"] == "<given>"
    assert "s" * 40 not in str(public)


# --- the load generator's own pauses --------------------------------------------------------


def test_full_collections_are_timed_only_while_watched() -> None:
    import gc

    from bench.gcwatch import GcPauses

    pauses = GcPauses()
    gc.collect()
    with pauses:
        gc.collect()
    gc.collect()
    summary = pauses.summary()
    assert summary["gen2"]["count"] == 1
    assert summary["gen2"]["max"] >= 0
