"""``bpmn-collab bench report RESULT.json ... --out DIR``: result files as one markdown table
per scenario (``DIR/report.md``) and PNG plots: each result's latency over time, and, for
a scenario run at several loads, its percentiles by load with one line per server.

Results come from ``bpmn-collab bench SCENARIO`` (``bench/run.py`` writes them). A result
may name the server it measured (``ours``, ``pycrdt-websocket``, ...); one that does not
measured ours. matplotlib is imported only when plots are drawn (``bench/plots.py``), so
building the command line never loads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DEFAULT_SERVER: Final = "ours"
_PERCENTILES: Final = ("p50", "p95", "p99", "max")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULT.json")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-report"), help="folder for report.md and plots"
    )


@dataclass(frozen=True, slots=True)
class Row:
    """One result, as the report shows it."""

    source: str
    scenario: str
    server: str
    clients: str
    rooms: str
    rate: str
    duration_s: float
    latency: dict[str, float | None]
    throughput: str
    errors: str
    cpu_mean: float | None
    rss_max: float | None
    load: float  # clients (users for rest): x of the percentiles-by-load plot...
    load_name: str  # ... what that number counts
    rate_hz: float  # ... or, for results at one load, their edit rate

    def cells(self) -> list[str]:
        return [
            self.server,
            self.clients,
            self.rooms,
            self.rate,
            number(self.duration_s),
            *(number(self.latency.get(name)) for name in _PERCENTILES),
            self.throughput,
            self.errors,
            number(self.cpu_mean),
            number(self.rss_max),
            f"`{self.source}`",
        ]


_HEADER: Final = [
    "server",
    "clients",
    "rooms",
    "rate",
    "duration s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "throughput",
    "errors",
    "server CPU mean %",
    "server RSS max MiB",
    "result",
]


def server_kind(result: dict[str, Any]) -> str:
    """The server a result measured (``server_under_test.kind``, else the ``server``
    parameter, else a ``server_kind`` field or a ``kind`` in the server block); ours when a
    result names none, as results from before peer servers do."""
    under_test = result.get("server_under_test")
    server = result.get("server")
    for value in (
        under_test.get("kind") if isinstance(under_test, dict) else None,
        result.get("params", {}).get("server"),
        result.get("server_kind"),
        server.get("kind") if isinstance(server, dict) else server,
    ):
        if isinstance(value, str) and value:
            return value
    return DEFAULT_SERVER


def row_of(result: dict[str, Any], source: str) -> Row:
    params: dict[str, Any] = result.get("params", {})
    scenario = str(result.get("scenario", "?"))
    details: dict[str, Any] = result.get("details", {})
    throughput: dict[str, Any] = result.get("throughput") or {}
    clients = int(params.get("clients", 0))
    rate = float(params.get("rate_hz", 0))
    load, load_name = float(clients), "clients"
    errors = str(result.get("error_count", "?"))
    if scenario == "rest":
        rest: dict[str, Any] = details.get("rest", {})
        editors = int(params.get("ws_editors", 0))
        clients_cell = f"{clients} users (think {number(params.get('think_s'))} s)"
        if editors:
            clients_cell += f" + {editors} editors"
        rooms_cell = str(params.get("ws_rooms", "-")) if editors else "-"
        rate_cell = f"{number(params.get('ws_rate_hz'))}/s per editor" if editors else "-"
        done = f"{number(rest.get('requests_per_s'))} req/s"
        if throughput.get("edits_per_s"):
            done += f"; {number(throughput['edits_per_s'])} edits/s"
        if rest.get("error_rate") is not None:
            errors += f" (REST {100 * rest['error_rate']:.2f} %)"
        load_name = "users"
    else:
        clients_cell = str(clients)
        rooms_cell = str(params.get("rooms", 1))
        rate_cell = "-" if scenario in ("join", "memory") else f"{number(rate)}/s"
        if scenario == "join":
            done = f"{number(details.get('joins_per_s'))} joins/s"
        elif scenario == "memory":
            clients_cell = f"{clients} idle + {params.get('documents', 0)} documents"
            memory: dict[str, Any] = details.get("memory", {})
            done = (
                f"{number(memory.get('idle', {}).get('per_connection_kib'))} KiB/connection; "
                f"{number(memory.get('documents', {}).get('per_document_mib'))} MiB/document"
            )
        elif throughput:
            done = (
                f"{number(throughput.get('edits_per_s'))} edits/s; "
                f"{number(throughput.get('messages_in_per_s'))} msgs/s in"
            )
        else:
            done = "-"
    server: dict[str, Any] = result["server"] if isinstance(result.get("server"), dict) else {}
    return Row(
        source=source,
        # A sweep's steps (bench/sweep.py) get a table and a by-rate plot of their own.
        scenario=f"{scenario}-sweep" if result.get("sweep") else scenario,
        server=server_kind(result),
        clients=clients_cell,
        rooms=rooms_cell,
        rate=rate_cell,
        duration_s=float(params.get("duration_s", 0)),
        latency={name: result.get("latency_ms", {}).get(name) for name in _PERCENTILES},
        throughput=done,
        errors=errors,
        cpu_mean=server.get("cpu_percent", {}).get("mean"),
        rss_max=server.get("rss_mib", {}).get("max"),
        load=load,
        load_name=load_name,
        rate_hz=float(params.get("ws_rate_hz", 0)) if scenario == "rest" else rate,
    )


def by_scenario(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows grouped by scenario (in order of first appearance), each group by server, load."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row.scenario].append(row)
    return {
        name: sorted(group, key=lambda r: (r.server, r.load, r.rate_hz))
        for name, group in groups.items()
    }


def markdown(
    results: list[tuple[str, dict[str, Any]]], rows: list[Row], images: dict[str, list[str]]
) -> str:
    """The report: per scenario a table and its plots; REST operations when there are any."""
    lines = ["# Benchmark report", ""]
    meanings = {
        row.scenario: _meaning(result) for (_, result), row in zip(results, rows, strict=True)
    }
    for scenario, group in by_scenario(rows).items():
        lines += [f"## {scenario}", ""]
        if meanings.get(scenario):
            lines += [f"Latency: {meanings[scenario]}.", ""]
        lines += markdown_table(_HEADER, [row.cells() for row in group])
        lines += [f"![{name}]({name})" for name in images.get(scenario, [])]
        lines.append("")
    rest = [(source, result) for source, result in results if result.get("scenario") == "rest"]
    if rest:
        lines += ["## REST operations", ""]
        lines += markdown_table(
            ["result", "series", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            [
                [f"`{source}`", name, *_series(result.get(name) or {})]
                for source, result in rest
                for name in _rest_series(result)
            ],
        )
        lines += markdown_table(
            ["result", "304", "409 conflicts", "429 limited", "conflict retries", "saves given up"],
            [_outcomes(source, result["details"].get("rest", {})) for source, result in rest],
        )
    return "\n".join(lines).rstrip() + "\n"


def _rest_series(result: dict[str, Any]) -> list[str]:
    fixed = ["latency_ms", "request_lag_ms", "ws_fanout_ms", "ws_send_lag_ms"]
    ops = sorted(key for key in result if key.startswith("rest_") and key.endswith("_ms"))
    return [name for name in [fixed[0], *ops, *fixed[1:]] if isinstance(result.get(name), dict)]


def _series(summary: dict[str, Any]) -> list[str]:
    return [str(summary.get("count", 0)), *(number(summary.get(name)) for name in _PERCENTILES)]


def _outcomes(source: str, rest: dict[str, Any]) -> list[str]:
    outcomes: dict[str, int] = rest.get("outcomes", {})
    saves: dict[str, int] = rest.get("saves", {})
    return [
        f"`{source}`",
        str(outcomes.get("not_modified", 0)),
        str(outcomes.get("conflict", 0)),
        str(outcomes.get("rate_limited", 0)),
        str(saves.get("conflict_retries", 0)),
        str(saves.get("saves_given_up", 0)),
    ]


def _meaning(result: dict[str, Any]) -> str:
    return str(result.get("latency_meaning") or "").rstrip(".")


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows),
        "",
    ]


def number(value: object) -> str:
    """A number as a table shows it: thousands separated, at most 3 significant decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def load_results(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """(file name, result) for each path; ``ValueError`` naming a file that is not one."""
    results = []
    for path in paths:
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        if not isinstance(result, dict) or "latency_ms" not in result or "scenario" not in result:
            raise ValueError(f"{path}: not a result of bpmn-collab bench")
        results.append((path.name, result))
    return results


def write_report(paths: list[Path], out: Path) -> Path:
    """Write ``out/report.md`` and its plots; return the report's path."""
    from bench import plots  # matplotlib: only when a report is made

    results = load_results(paths)
    rows = [row_of(result, source) for source, result in results]
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, list[str]] = defaultdict(list)
    for index, ((source, result), row) in enumerate(zip(results, rows, strict=True), start=1):
        name = f"timeline-{index:02d}-{_slug(row.scenario)}-{_slug(row.server)}.png"
        title = (
            f"{row.scenario} on {row.server}: {row.clients}, {number(row.duration_s)} s ({source})"
        )
        if plots.latency_over_time(result, out / name, title=title):
            images[row.scenario].append(name)
    for scenario, group in by_scenario(rows).items():
        name = f"by-load-{_slug(scenario)}.png"
        timed = any(row.latency.get("p50") is not None for row in group)  # memory times nothing
        if timed and plots.percentiles_by_load(
            group, out / name, title=f"{scenario}: latency by load"
        ):
            images[scenario].insert(0, name)
    report = out / "report.md"
    report.write_text(markdown(results, rows, images))
    return report


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text.lower())


def main(args: argparse.Namespace) -> int:
    try:
        report = write_report(args.results, args.out)
    except ValueError as exc:
        print(f"bpmn-collab bench report: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {report}")
    return 0
