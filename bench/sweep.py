"""``bpmn-collab bench sweep``: the ``rooms`` scenario at rising per-editor rates, each step
against a fresh server, up to the first rate the server does not sustain.

A step is sustained when it had no error and its fan-out p99 stayed within ``--max-p99-ms``.
The sweep stops at the first step that is not, and also when the load generator itself fell
behind its schedule (send lag p99 above ``--max-send-lag-ms``): past that rate the numbers
would measure the driver, not the server, and the sweep says so ("driver-bound") instead of
blaming either. Every step's result file is kept beside the sweep's own summary
(``sweep-KIND.json``), which names the highest rate sustained.

By default each step starts its own server (``bench/servers.py``), so no step inherits the
rooms, caches or heap of the one before; with ``--target`` every step runs against that one
server, and the summary says the results may carry state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from bench import event_loop
from bench.config import MAX_CLIENTS, SERVER_KINDS, BenchConfig, cpu_list
from core.errors import CollabError

# A 2-core box carries 1,000 editors / 100 rooms at about 1 edit/s each (issue 7's reference
# point): a few steps below it to find a limit there, a few above for servers that do better.
DEFAULT_RATES: Final = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
DEFAULT_MAX_P99_MS: Final = 100.0
# An edit sent 20 ms after its time, at the 99th percentile, means the driver could no
# longer keep its own schedule: its loop, not the server, set the pace.
DEFAULT_MAX_SEND_LAG_MS: Final = 20.0
MAX_STEPS: Final = 20

Verdict = Literal["sustained", "errors", "driver_bound", "p99_over_limit", "no_samples", "failed"]
_SAY: Final[dict[str, str]] = {
    "sustained": "sustained",
    "errors": "errors",
    "driver_bound": "driver-bound (the load generator fell behind its schedule)",
    "p99_over_limit": "p99 over the limit",
    "no_samples": "no edit was timed",
    "failed": "the step could not run",
}


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """What to sweep: ``base`` is the ``rooms`` run of every step, but for its rate and
    result file; ``base.spawn`` starts a fresh server per step."""

    base: BenchConfig
    rates: tuple[float, ...]
    folder: Path
    max_p99_ms: float = DEFAULT_MAX_P99_MS
    max_send_lag_ms: float = DEFAULT_MAX_SEND_LAG_MS

    def __post_init__(self) -> None:
        if self.base.scenario != "rooms":
            raise ValueError("a sweep runs the rooms scenario")
        if not 1 <= len(self.rates) <= MAX_STEPS:
            raise ValueError(f"give 1..{MAX_STEPS} rates")
        if any(b <= a for a, b in zip(self.rates, self.rates[1:], strict=False)):
            raise ValueError("rates must rise from step to step")
        if not (0 < self.max_p99_ms <= 60_000 and 0 < self.max_send_lag_ms <= 60_000):
            raise ValueError("the p99 and send-lag limits must be in (0, 60000] ms")
        for rate in self.rates:
            replace(self.base, rate_hz=rate)  # each step's config checks its rate

    def step(self, index: int) -> BenchConfig:
        rate = self.rates[index]
        name = f"sweep-{self.base.server}-{rate:g}hz.json"
        return replace(self.base, rate_hz=rate, out=self.folder / name)

    @property
    def summary_path(self) -> Path:
        return self.folder / f"sweep-{self.base.server}.json"


def verdict(result: dict[str, Any], *, max_p99_ms: float, max_send_lag_ms: float) -> Verdict:
    """How one step went. Errors first (a server that errs sustains nothing), then the
    driver's own lag (beyond it the latencies are the driver's), then the p99."""
    if result.get("error_count"):
        return "errors"
    lag = (result.get("send_lag_ms") or {}).get("p99")
    if lag is not None and lag > max_send_lag_ms:
        return "driver_bound"
    p99 = (result.get("latency_ms") or {}).get("p99")
    if p99 is None:
        return "no_samples"
    return "p99_over_limit" if p99 > max_p99_ms else "sustained"


def step_row(rate: float, result: dict[str, Any], file: str, judged: Verdict) -> dict[str, Any]:
    latency = result.get("latency_ms") or {}
    return {
        "rate_hz": rate,
        "result": file,
        "verdict": judged,
        **{name: latency.get(name) for name in ("p50", "p95", "p99", "max")},
        "errors": result.get("error_count"),
        "send_lag_p99_ms": (result.get("send_lag_ms") or {}).get("p99"),
        "edits_per_s": (result.get("throughput") or {}).get("edits_per_s"),
    }


def highest_sustained(steps: list[dict[str, Any]]) -> float | None:
    """The rate of the last sustained step before the first one that was not."""
    best = None
    for step in steps:
        if step["verdict"] != "sustained":
            break
        best = step["rate_hz"]
    return best


def summarize_sweep(plan: SweepPlan, steps: list[dict[str, Any]], notes: list[str]) -> str:
    """One paragraph for people: the answer, and why the sweep stopped where it did."""
    best = highest_sustained(steps)
    base = plan.base
    lines = [
        f"sweep of rooms on {base.server}: {base.clients} editors / {base.rooms} rooms, "
        f"{base.duration_s:g} s per step, p99 limit {plan.max_p99_ms:g} ms",
        *(
            f"  {s['rate_hz']:g} edits/s: p99 {s['p99']} ms, errors {s['errors']}, "
            f"send lag p99 {s['send_lag_p99_ms']} ms -> {_SAY[s['verdict']]} ({s['result']})"
            for s in steps
        ),
    ]
    if best is None:
        lines.append("  highest rate sustained: none of the rates tried")
    else:
        lines.append(f"  highest rate sustained: {best:g} edits/s per editor")
    stop = next((s for s in steps if s["verdict"] != "sustained"), None)
    if stop is None:
        lines.append("  every rate was sustained: the limit is above the last rate tried")
    elif stop["verdict"] == "driver_bound":
        lines.append(
            f"  stopped at {stop['rate_hz']:g}: driver-bound, the load generator and not the "
            "server is the limit there"
        )
    else:
        lines.append(f"  stopped at {stop['rate_hz']:g}: {_SAY[stop['verdict']]}")
    lines += [f"  note: {note}" for note in notes]
    return "\n".join(lines)


async def run_sweep(plan: SweepPlan, *, log: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the steps until one is not sustained; write and return the summary."""
    # The driver and the servers load only when a sweep runs, not when the CLI is built.
    from bench.main import run_bench
    from bench.procstat import machine_info
    from bench.servers import describe

    plan.folder.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    notes = []
    if not plan.base.spawn:
        notes.append(
            f"every step ran against one server ({plan.base.target}), not a fresh one: "
            "later steps may carry the state of earlier ones (rooms, caches, heap)"
        )
    steps: list[dict[str, Any]] = []
    for index, rate in enumerate(plan.rates):
        config = plan.step(index)
        assert config.out is not None
        print(f"sweep step {index + 1}/{len(plan.rates)}: {rate:g} edits/s", file=log, flush=True)
        try:
            result = await run_bench(config, log=log)
        except CollabError as exc:
            steps.append({**step_row(rate, {}, config.out.name, "failed"), "detail": exc.detail})
            break
        result.pop("out", None)
        result["sweep"] = {"step": index, "rate_hz": rate, "summary": plan.summary_path.name}
        config.out.write_text(json.dumps(result, indent=2) + "\n")
        judged = verdict(result, max_p99_ms=plan.max_p99_ms, max_send_lag_ms=plan.max_send_lag_ms)
        steps.append(step_row(rate, result, config.out.name, judged))
        if judged != "sustained":
            break
    base = plan.base
    summary = {
        "scenario": "sweep",
        "date": started,
        "server_under_test": {**describe(base.server), "spawned": base.spawn},
        "params": {
            "editors": base.clients,
            "rooms": base.rooms,
            "rates_hz": list(plan.rates),
            "duration_s": base.duration_s,
            "max_p99_ms": plan.max_p99_ms,
            "max_send_lag_ms": plan.max_send_lag_ms,
            "target": None if base.spawn else base.target,
            "server_cpus": list(base.server_cpus),
        },
        "machine": machine_info(),
        "steps": steps,
        "highest_sustained_rate_hz": highest_sustained(steps),
        "stopped_by": next((s["verdict"] for s in steps if s["verdict"] != "sustained"), None),
        "notes": notes,
    }
    summary["text"] = summarize_sweep(plan, steps, notes)
    plan.summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", choices=SERVER_KINDS, default="ours")
    parser.add_argument(
        "--target",
        help="run every step against this running server (loopback) instead of a fresh "
        "one per step; results may then carry state",
    )
    parser.add_argument("--server-cpus", type=cpu_list, default=(), help="pin spawned servers")
    parser.add_argument("-n", "--editors", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument(
        "--rates",
        type=_rates,
        default=DEFAULT_RATES,
        help="edits/s per editor, rising (default "
        + ",".join(f"{r:g}" for r in DEFAULT_RATES)
        + ")",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of editing a step")
    parser.add_argument("--max-p99-ms", type=float, default=DEFAULT_MAX_P99_MS)
    parser.add_argument(
        "--max-send-lag-ms",
        type=float,
        default=DEFAULT_MAX_SEND_LAG_MS,
        help="driver's send lag p99 above which a step is driver-bound",
    )
    parser.add_argument("--out", type=Path, help="folder for the step results and summary")
    parser.add_argument("--secret", help="our server's AUTH_JWT_SECRET, with --target")
    parser.add_argument("--token", help="a user token, with --target and no secret")
    parser.add_argument("--tasks", type=int, default=50, help="tasks per generated diagram")
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--setup-timeout", type=float, default=300.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--origin")
    parser.add_argument("--quiet", action="store_true", help="no live progress lines")


def plan_from_args(args: argparse.Namespace) -> SweepPlan:
    if args.target and args.server_cpus:
        raise ValueError("--server-cpus pins spawned servers: not with --target")
    if not 1 <= args.editors <= MAX_CLIENTS:
        raise ValueError(f"editors must be 1..{MAX_CLIENTS}")
    folder = args.out or Path(
        f"bench-sweep-{args.server}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    )
    base = BenchConfig(
        scenario="rooms",
        server=args.server,
        target=args.target or "http://127.0.0.1:8000",
        spawn=not args.target,
        server_cpus=args.server_cpus,
        clients=args.editors,
        rooms=args.rooms,
        rate_hz=args.rates[0],
        duration_s=args.duration,
        secret=args.secret or os.environ.get("AUTH_JWT_SECRET") or None,
        token=args.token,
        tasks=args.tasks,
        connect_concurrency=args.connect_concurrency,
        setup_timeout_s=args.setup_timeout,
        drain_s=args.drain,
        origin=args.origin,
        progress=not args.quiet,
    )
    return SweepPlan(
        base=base,
        rates=args.rates,
        folder=folder,
        max_p99_ms=args.max_p99_ms,
        max_send_lag_ms=args.max_send_lag_ms,
    )


def main(args: argparse.Namespace) -> int:
    try:
        plan = plan_from_args(args)
    except ValueError as exc:
        print(f"bpmn-collab bench sweep: {exc}", file=sys.stderr)
        return 2
    summary = event_loop.run(run_sweep(plan))
    print(summary["text"])
    print(f"  wrote {plan.summary_path} and the step results beside it")
    return 0 if summary["steps"] and summary["steps"][0]["verdict"] != "failed" else 1


def _rates(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
