"""``bpmn-collab bench SCENARIO``: run one scenario against a server on loopback, print a
progress line every second and a summary at the end, and write the result as JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from bench import event_loop
from bench.config import BenchConfig, config_from_args
from bench.run import Run
from bench.scenarios.broadcast import broadcast
from bench.scenarios.join import join_storm
from bench.scenarios.memory import memory
from bench.scenarios.rest import rest
from bench.scenarios.rooms import rooms
from bench.servers import spawned_for
from bench.target import SetupFailed, open_target
from core.errors import CollabError

SCENARIOS: Final[dict[str, Callable[[Run], Awaitable[None]]]] = {
    "rooms": rooms,
    "broadcast": broadcast,
    "join": join_storm,
    "rest": rest,
    "memory": memory,
}
# Beyond set-up, editing and draining: closing 1,000 sockets and writing the result.
_SLACK_S: Final = 60.0


async def run_bench(config: BenchConfig, *, log: TextIO = sys.stderr) -> dict[str, Any]:
    """Run ``config``'s scenario to its end (bounded in time), write and return the result."""
    # With --spawn: the server started for this run, its URL, secret and pid in the config.
    async with spawned_for(config, log=log) as actual:
        result = await _run_bench(actual, log)
    out = config.out or Path(
        f"bench-{config.scenario}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    result["out"] = str(out)
    return result


async def _run_bench(config: BenchConfig, log: TextIO) -> dict[str, Any]:
    async with open_target(config) as target:
        run = Run(config, target, log=log)
        ticker = asyncio.create_task(run.tick_forever())
        budget = config.setup_timeout_s + config.duration_s + config.drain_s + _SLACK_S
        try:
            async with asyncio.timeout(budget):
                await SCENARIOS[config.scenario](run)
        except TimeoutError:
            run.errors.add("run_timeout", f"the run took longer than {budget:.0f} s")
        except SetupFailed as exc:
            run.errors.add(exc.kind, exc.detail)
            run.notes.append(f"set-up failed: {exc.detail}")
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await run.close_peers()
        run.tick()  # the last partial second
        return run.result()


def summary(result: dict[str, Any]) -> str:
    latency = result["latency_ms"]
    lines = [
        f"{result['scenario']} on {_server_name(result)}: "
        f"{result['connections']['planned']} connections, "
        f"{result['params']['duration_s']} s, target {result['target']}",
        f"  latency ms ({result['latency_meaning']}):",
        f"    n {latency['count']}  p50 {latency['p50']}  p95 {latency['p95']}  "
        f"p99 {latency['p99']}  max {latency['max']}",
    ]
    for name in ("applied_latency_ms", "send_lag_ms", "request_lag_ms", "ws_fanout_ms"):
        if name in result:
            extra = result[name]
            lines.append(f"  {name}: p50 {extra['p50']}  p99 {extra['p99']}  max {extra['max']}")
    throughput = result["throughput"]
    if throughput and throughput["edits_sent"]:
        lines.append(
            f"  throughput: {throughput['edits_per_s']} edits/s sent, "
            f"{throughput['messages_in_per_s']} msgs/s received "
            f"({throughput['bytes_in_per_s'] / 1024:.0f} KiB/s)"
        )
    if "rest" in result["details"]:
        rest = result["details"]["rest"]
        lines.append(
            f"  rest: {rest['users']} users, {rest['requests']} requests, "
            f"{rest['requests_per_s']} req/s, outcomes {rest['outcomes']}, "
            f"error rate {rest['error_rate']}"
        )
    if "joins_per_s" in result["details"]:
        details = result["details"]
        lines.append(
            f"  joins: {details['joins_per_s']}/s over {details['storm_s']} s; first open "
            f"{details['first_open_ms']} ms; state {details['state_bytes'] / 1024:.0f} KiB"
        )
    if "memory" in result["details"]:
        lines += memory_lines(result["details"]["memory"])
    server = result["server"]
    lines += [
        f"  errors: {result['error_count']} {result['errors'] or ''}".rstrip(),
        f"  server {server['pids']}: CPU mean {server['cpu_percent']['mean']} % "
        f"(busiest second {server['cpu_percent']['max_1s'] or '-'} %), "
        f"RSS max {server['rss_mib']['max']} MiB; "
        f"driver CPU mean {result['driver']['cpu_percent']['mean']} %, longest full GC "
        f"{result['driver']['gc_pause_ms']['gen2']['max'] or 0} ms",
        *(f"  note: {note}" for note in result["notes"]),
        f"  wrote {result['out']}",
    ]
    return "\n".join(lines)


def memory_lines(figures: dict[str, Any]) -> list[str]:
    lines = []
    if idle := figures.get("idle"):
        lines.append(
            f"  memory: {idle['connections']} idle connections in {idle['rooms']} rooms: "
            f"{idle['baseline_kib'] / 1024:.1f} -> {idle['after_kib'] / 1024:.1f} MiB, "
            f"{idle['per_connection_kib']} KiB per connection (target <= {idle['target_kib']:g}; "
            f"second half alone {idle['marginal_per_connection_kib']})"
        )
    if documents := figures.get("documents"):
        lines.append(
            f"  memory: {documents['documents']} documents of "
            f"{documents['elements_per_document']} elements: "
            f"{documents['baseline_kib'] / 1024:.1f} -> {documents['after_kib'] / 1024:.1f} MiB, "
            f"{documents['per_document_mib']} MiB per document "
            f"(target <= {documents['target_mib']:g}; second half alone "
            f"{documents['marginal_per_document_mib']})"
        )
    return lines


def _server_name(result: dict[str, Any]) -> str:
    server = result.get("server_under_test") or {}
    return f"{server.get('kind', '?')} {server.get('version') or ''}".rstrip()


def main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"bpmn-collab bench: {exc}", file=sys.stderr)
        return 2
    try:
        result = event_loop.run(run_bench(config))
    except CollabError as exc:
        print(f"bpmn-collab bench: {exc.detail}", file=sys.stderr)
        return 2
    print(summary(result))
    return 1 if result["error_count"] else 0
