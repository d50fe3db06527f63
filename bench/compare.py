"""``bpmn-collab bench compare --out DIR``: the same scenarios against each server in one go,
side by side.

Every scenario runs against a freshly started server (``bench/servers.py``; a sweep starts
one per step), on loopback, with issue 7's loads by default (``--quick``: a few clients for
a couple of seconds, for tests and smoke checks). Where the machine has two cores or more,
the server is pinned to the lower half and the load generator to the rest
(:mod:`bench.cores`). Scenario-major order: all servers run one scenario before the next, so
whatever else the machine does drifts across scenarios rather than between servers.

DIR gets every result file (``SCENARIO-SERVER.json``; a sweep's steps and summary), then
``report.md`` with its plots (``bench/report.py``) and ``compare.md``, each metric of each
server and the ratio ours / peer (``bench/comparison.py``). A server that cannot run a
scenario (``rest`` needs our REST API) is skipped with a note, as is one that fails to start.
The run is bounded: at most 4 servers x 6 scenarios, each run bounded in time by the driver.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from bench import event_loop
from bench.comparison import Context, compare_markdown
from bench.config import PEER_SCENARIOS, SERVER_KINDS, BenchConfig
from bench.cores import CoreSplit, available_cores, driver_pinned, split_cores
from bench.diagrams import chain_diagram
from bench.sweep import DEFAULT_RATES, SweepPlan
from core.errors import CollabError

COMPARE_SCENARIOS: Final = ("rooms", "broadcast", "join", "memory", "sweep", "rest")
DEFAULT_SCENARIOS: Final = ("rooms", "broadcast", "join", "memory", "sweep")
DEFAULT_DURATION_S: Final = 60.0
QUICK_DURATION_S: Final = 2.0
JOIN_CAP_S: Final = 60.0  # join: the storm's time limit, not a window of load
QUICK_JOIN_TASKS: Final = 300  # a 600-element diagram instead of the 886 KiB corpus file

# Issue 7's loads; --quick's few clients. --duration applies to rooms, broadcast, rest and
# each sweep step (memory settles for its own few seconds, join is capped).
_FULL: Final[dict[str, dict[str, Any]]] = {
    "rooms": {"clients": 1000, "rooms": 100, "rate_hz": 1.0},
    "broadcast": {"clients": 1000, "rate_hz": 10.0, "sample": 50},
    "join": {"clients": 200},
    "memory": {"clients": 1000, "rooms": 4, "documents": 50, "duration_s": 3.0},
    "rest": {
        "clients": 1000,
        "think_s": 5.0,
        "diagrams": 50,
        "ws_editors": 20,
        "ws_rooms": 2,
        "ws_rate_hz": 1.0,
    },
    "sweep": {"clients": 1000, "rooms": 100},
}
_QUICK: Final[dict[str, dict[str, Any]]] = {
    "rooms": {"clients": 6, "rooms": 2, "rate_hz": 5.0},
    "broadcast": {"clients": 5, "rate_hz": 10.0, "sample": 2},
    "join": {"clients": 8},
    "memory": {"clients": 20, "rooms": 2, "documents": 2, "duration_s": 1.0},
    "rest": {
        "clients": 4,
        "think_s": 0.2,
        "diagrams": 3,
        "ws_editors": 2,
        "ws_rooms": 1,
        "ws_rate_hz": 1.0,
    },
    "sweep": {"clients": 4, "rooms": 2},
}
_QUICK_RATES: Final = (1.0, 2.0)


@dataclass(frozen=True, slots=True)
class ComparePlan:
    folder: Path
    servers: tuple[str, ...] = SERVER_KINDS
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    duration_s: float | None = None  # None: 60 s, or 2 s with quick
    quick: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name, given, known in (
            ("server", self.servers, SERVER_KINDS),
            ("scenario", self.scenarios, COMPARE_SCENARIOS),
        ):
            if not given or len(set(given)) != len(given):
                raise ValueError(f"give each {name} once, at least one")
            if unknown := [item for item in given if item not in known]:
                raise ValueError(f"unknown {name}: {', '.join(unknown)} (one of {known})")

    @property
    def duration(self) -> float:
        if self.duration_s is not None:
            return self.duration_s
        return QUICK_DURATION_S if self.quick else DEFAULT_DURATION_S

    @property
    def command(self) -> str:
        """The command that runs this plan again, every option spelled out."""
        argv = [
            "bpmn-collab", "bench", "compare", "--out", str(self.folder),
            "--servers", ",".join(self.servers), "--scenarios", ",".join(self.scenarios),
            "--duration", f"{self.duration:g}",
        ]  # fmt: skip
        return shlex.join([*argv, *(["--quick"] if self.quick else [])])

    def runs(self, scenario: str, server: str) -> bool:
        return server == "ours" or scenario in (*PEER_SCENARIOS, "sweep")

    def config(self, scenario: str, server: str, cores: CoreSplit) -> BenchConfig:
        """One scenario's run against a fresh ``server`` (not the sweep: :meth:`sweep`)."""
        options = dict((_QUICK if self.quick else _FULL)[scenario])
        options.setdefault("duration_s", JOIN_CAP_S if scenario == "join" else self.duration)
        if scenario == "join" and self.quick:
            options["diagram"] = self.folder / "quick-join.bpmn"
        return BenchConfig(
            scenario=scenario,
            server=server,
            spawn=True,
            server_cpus=cores.server,
            out=self.folder / f"{scenario}-{server}.json",
            progress=self.progress,
            **options,
        )

    def sweep(self, server: str, cores: CoreSplit) -> SweepPlan:
        options = (_QUICK if self.quick else _FULL)["sweep"]
        base = BenchConfig(
            scenario="rooms",
            server=server,
            spawn=True,
            server_cpus=cores.server,
            clients=options["clients"],
            rooms=options["rooms"],
            duration_s=self.duration,
            progress=self.progress,
        )
        rates = _QUICK_RATES if self.quick else DEFAULT_RATES
        return SweepPlan(base=base, rates=rates, folder=self.folder)


@dataclass(slots=True)
class Outcome:
    results: dict[str, dict[str, dict[str, Any]]]  # scenario -> server -> result
    files: dict[str, dict[str, str]]  # the same -> the file it was written to
    report_inputs: list[Path]  # the results bench/report.py reads (sweep steps included)
    notes: list[str]
    failed: int  # runs that produced no result


async def run_compare(plan: ComparePlan, cores: CoreSplit, *, log: TextIO) -> Outcome:
    # The driver loads only when a comparison runs, not when the CLI is built.
    from bench.main import run_bench
    from bench.sweep import run_sweep

    plan.folder.mkdir(parents=True, exist_ok=True)
    if plan.quick and "join" in plan.scenarios:
        (plan.folder / "quick-join.bpmn").write_bytes(chain_diagram(QUICK_JOIN_TASKS))
    outcome = Outcome({}, {}, [], [], 0)
    said: dict[tuple[str, str], list[str]] = {}  # (scenario, note) -> servers, in order
    if cores.pinned and "ours" in plan.servers:
        outcome.notes.append(
            "ours' background worker process (snapshots, thumbnails) inherits the server's "
            f"core(s) {','.join(map(str, cores.server))}: pinned, it competes with the event "
            "loop there instead of using another core"
        )
    for scenario in plan.scenarios:
        for server in plan.servers:
            if not plan.runs(scenario, server):
                outcome.notes.append(f"{scenario} skipped on {server}: it needs our REST API")
                continue
            print(f"compare: {scenario} on {server}", file=log, flush=True)
            try:
                if scenario == "sweep":
                    sweep = plan.sweep(server, cores)
                    result = await run_sweep(sweep, log=log)
                    file = sweep.summary_path.name
                    outcome.notes += [
                        f"sweep on {server}: {step['rate_hz']:g} edits/s did not run: "
                        f"{step.get('detail')}"
                        for step in result["steps"]
                        if step["verdict"] == "failed"
                    ]
                    outcome.report_inputs += [
                        plan.folder / step["result"]
                        for step in result["steps"]
                        if (plan.folder / step["result"]).exists()
                    ]
                else:
                    config = plan.config(scenario, server, cores)
                    assert config.out is not None
                    result = await run_bench(config, log=log)
                    file = config.out.name
                    outcome.report_inputs.append(config.out)
            except CollabError as exc:
                outcome.notes.append(f"{scenario} on {server} did not run: {exc.detail}")
                outcome.failed += 1
                continue
            outcome.results.setdefault(scenario, {})[server] = result
            outcome.files.setdefault(scenario, {})[server] = file
            for note in result.get("notes", []):
                said.setdefault((scenario, note), []).append(server)
    # A note every server's run made (the driver's own caveats) is said once.
    outcome.notes += [
        f"{scenario} on {', '.join(on)}: {note}" for (scenario, note), on in said.items()
    ]
    return outcome


def write_compare(plan: ComparePlan, cores: CoreSplit, outcome: Outcome, started: str) -> Path:
    """report.md (and plots) from the results, then compare.md; compare.md's path."""
    from bench.procstat import machine_info
    from bench.report import write_report
    from bench.servers import describe

    if outcome.report_inputs:
        write_report(outcome.report_inputs, plan.folder)
    context = Context(
        date=started,
        command=plan.command,
        machine=machine_info(),
        pinning=cores.describe(),
        versions={server: describe(server) for server in plan.servers},
    )
    text = compare_markdown(
        outcome.results,
        scenarios=list(plan.scenarios),
        servers=list(plan.servers),
        files=outcome.files,
        context=context,
        notes=outcome.notes,
    )
    path = plan.folder / "compare.md"
    path.write_text(text)
    return path


# --- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for everything")
    parser.add_argument(
        "--servers", type=_names, default=SERVER_KINDS, help="default: " + ",".join(SERVER_KINDS)
    )
    parser.add_argument(
        "--scenarios",
        type=_names,
        default=DEFAULT_SCENARIOS,
        help=f"of {','.join(COMPARE_SCENARIOS)}; default: {','.join(DEFAULT_SCENARIOS)}",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds of load per run and per sweep step (default 60; 2 with --quick)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few clients for a couple of seconds each"
    )
    parser.add_argument("--quiet", action="store_true", help="no live progress lines")


def main(args: argparse.Namespace) -> int:
    try:
        plan = ComparePlan(
            folder=args.out,
            servers=args.servers,
            scenarios=args.scenarios,
            duration_s=args.duration,
            quick=args.quick,
            progress=not args.quiet,
        )
    except ValueError as exc:
        print(f"bpmn-collab bench compare: {exc}", file=sys.stderr)
        return 2
    cores = split_cores(available_cores())
    print(f"compare: {cores.describe()}", file=sys.stderr)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with driver_pinned(cores.driver):
        outcome = event_loop.run(run_compare(plan, cores, log=sys.stderr))
    path = write_compare(plan, cores, outcome, started)
    print(f"wrote {path}, {plan.folder / 'report.md'} and {len(outcome.report_inputs)} results")
    return 1 if outcome.failed else 0


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
