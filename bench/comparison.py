"""``compare.md``: for each scenario, every metric of each server side by side and the ratio
ours / peer, with the direction that is better.

Pure: it reads result dicts (``bench/run.py`` results, and a sweep's summary from
``bench/sweep.py``) and returns text, so it is tested without running anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from bench.report import markdown_table, number

OURS: Final = "ours"
Better = Literal["lower", "higher"]


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    better: Better | None  # None: a fact to read, not to rank (no ratio)
    read: Callable[[dict[str, Any]], object]


def _at(*path: str) -> Callable[[dict[str, Any]], object]:
    """Reads ``result[path[0]][path[1]]...``; None where any step is missing."""

    def read(result: dict[str, Any]) -> object:
        value: object = result
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return read


_LATENCY: Final = [
    Metric(f"{name} ms", "lower", _at("latency_ms", name)) for name in ("p50", "p95", "p99", "max")
]
_COSTS: Final = [
    Metric("errors", "lower", _at("error_count")),
    Metric("server CPU mean %", "lower", _at("server", "cpu_percent", "mean")),
    Metric("server RSS max MiB", "lower", _at("server", "rss_mib", "max")),
]
_EDITS: Final = Metric("throughput edits/s", "higher", _at("throughput", "edits_per_s"))

METRICS: Final[dict[str, list[Metric]]] = {
    "rooms": [*_LATENCY, _EDITS, *_COSTS],
    "broadcast": [
        *_LATENCY,
        Metric("applied p99 ms (sampled Docs)", "lower", _at("applied_latency_ms", "p99")),
        _EDITS,
        *_COSTS,
    ],
    "join": [*_LATENCY, Metric("joins/s", "higher", _at("details", "joins_per_s")), *_COSTS],
    "memory": [
        Metric(
            "KiB per idle connection",
            "lower",
            _at("details", "memory", "idle", "per_connection_kib"),
        ),
        Metric(
            "MiB per open 1,000-element document",
            "lower",
            _at("details", "memory", "documents", "per_document_mib"),
        ),
        *_COSTS,
    ],
    "sweep": [
        Metric(
            "highest sustained rate, edits/s per editor",
            "higher",
            _at("highest_sustained_rate_hz"),
        ),
        Metric("stopped by", None, _at("stopped_by")),
        Metric("steps run", None, lambda summary: len(summary.get("steps") or [])),
    ],
    "rest": [
        *_LATENCY,
        Metric("requests/s", "higher", _at("details", "rest", "requests_per_s")),
        Metric("REST error rate", "lower", _at("details", "rest", "error_rate")),
        *_COSTS,
    ],
}


def ratio(ours: object, peer: object) -> str:
    """ours / peer as the table shows it: "-" when either is missing or not a number."""
    if not _is_number(ours) or not _is_number(peer):
        return "-"
    a, b = float(ours), float(peer)  # type: ignore[arg-type]
    if b == 0:
        return "1.00" if a == 0 else "inf"
    return f"{a / b:.2f}"


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def ratio_rows(
    scenario: str, results: dict[str, dict[str, Any]], servers: list[str]
) -> list[list[str]]:
    """One row per metric: its name, the better direction, each server's value (in the
    order of ``servers``; "-" for a server without a result), then ours / each peer."""
    peers = [server for server in servers if server != OURS]
    ours = results.get(OURS)
    rows = []
    for metric in METRICS.get(scenario, []):
        values = {server: metric.read(result) for server, result in results.items()}
        ratios = [
            ratio(values.get(OURS), values.get(peer))
            if metric.better and ours is not None and peer in results
            else "-"
            for peer in peers
        ]
        rows.append(
            [
                metric.name,
                metric.better or "-",
                *(number(values.get(server)) for server in servers),
                *(ratios if OURS in servers else []),
            ]
        )
    return rows


def ratio_header(servers: list[str]) -> list[str]:
    peers = [server for server in servers if server != OURS]
    ratios = [f"{OURS} / {peer}" for peer in peers] if OURS in servers else []
    return ["metric", "better", *servers, *ratios]


def load_of(scenario: str, result: dict[str, Any]) -> str:
    """The load a result ran, in words."""
    params: dict[str, Any] = result.get("params") or {}
    clients, rate = params.get("clients"), params.get("rate_hz")
    duration = number(params.get("duration_s"))
    if scenario == "rooms":
        return (
            f"{clients} editors / {params.get('rooms')} rooms / {number(rate)} edit/s each, "
            f"{duration} s"
        )
    if scenario == "broadcast":
        return f"1 writer -> {clients} observers, {number(rate)} edits/s, {duration} s"
    if scenario == "join":
        details: dict[str, Any] = result.get("details") or {}
        name = Path(str(details.get("diagram", "?"))).name
        size = details.get("xml_bytes")
        kib = f" ({size / 1024:.0f} KiB)" if isinstance(size, int) else ""
        return f"{clients} clients join at once into {name}{kib}"
    if scenario == "memory":
        return (
            f"{clients} idle connections in {params.get('rooms')} rooms; "
            f"{params.get('documents')} rooms of a 1,000-element diagram, one client each; "
            f"settle >= {duration} s"
        )
    if scenario == "sweep":
        rates = ", ".join(number(r) for r in params.get("rates_hz", []))
        return (
            f"rooms with {params.get('editors')} editors / {params.get('rooms')} rooms at "
            f"{rates} edits/s each, {number(params.get('duration_s'))} s per step, a fresh "
            f"server per step; sustained: 0 errors, p99 <= {number(params.get('max_p99_ms'))} "
            f"ms, driver send lag p99 <= {number(params.get('max_send_lag_ms'))} ms"
        )
    if scenario == "rest":
        return (
            f"{clients} REST users (think {number(params.get('think_s'))} s) beside "
            f"{params.get('ws_editors')} editors in {params.get('ws_rooms')} rooms, {duration} s"
        )
    return "-"


@dataclass(frozen=True, slots=True)
class Context:
    """What compare.md states before the tables: when, how, on what."""

    date: str
    command: str
    machine: dict[str, Any]
    pinning: str
    versions: dict[str, dict[str, Any]]


def compare_markdown(
    results: dict[str, dict[str, dict[str, Any]]],
    *,
    scenarios: list[str],
    servers: list[str],
    files: dict[str, dict[str, str]],
    context: Context,
    notes: list[str],
) -> str:
    """compare.md: ``results[scenario][server]`` is a result (a sweep's summary for
    "sweep"), ``files`` the same keys to the file it was written to."""
    machine = context.machine
    lines = [
        "# Comparison: ours against its peers",
        "",
        f"- date: {context.date}",
        f"- command: `{context.command}`",
        f"- machine: {machine.get('nproc')} cores ({machine.get('cpu_model')}), "
        f"{machine.get('ram_gib')} GiB RAM, Linux {machine.get('kernel')}, "
        f"Python {machine.get('python')}",
        f"- cores: {context.pinning}",
        "- every scenario ran against a freshly started server (a sweep: one per step), "
        "on loopback, with the load generator on the same machine",
        "- ratio ours / peer: below 1 favours ours where lower is better, above 1 where "
        "higher is better",
        "",
        "## Versions",
        "",
        *markdown_table(
            ["server", "version", "packages"],
            [
                [
                    server,
                    str(context.versions.get(server, {}).get("version")),
                    ", ".join(
                        f"{name} {value}"
                        for name, value in (
                            context.versions.get(server, {}).get("packages") or {}
                        ).items()
                    ),
                ]
                for server in servers
            ],
        ),
    ]
    for scenario in scenarios:
        by_server = results.get(scenario, {})
        lines += [f"## {scenario}", ""]
        if not by_server:
            lines += ["No server ran it (see the notes).", ""]
            continue
        first = by_server.get(OURS) or next(iter(by_server.values()))
        lines += [f"Load: {load_of(scenario, first)}.", ""]
        lines += markdown_table(ratio_header(servers), ratio_rows(scenario, by_server, servers))
        named = files.get(scenario, {})
        lines += [
            "Results: " + ", ".join(f"{s} `{named[s]}`" for s in servers if s in named),
            "",
        ]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines).rstrip() + "\n"
