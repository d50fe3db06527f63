"""The report's PNG plots, drawn with matplotlib's Agg canvas (no display, no pyplot state).

- latency over time: one result's per-second p50/p95/p99 over its measured window (log
  scale: a one-second stall and a 2 ms median must both be readable), and under it how
  many samples each second timed and the server's CPU;
- percentiles by load: one scenario's p50/p95/p99 against its load (clients, users), one
  colour per server, one line style per percentile.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter

if TYPE_CHECKING:
    from bench.report import Row

_STYLES: Final = {"p50": ":", "p95": "--", "p99": "-"}
_COLOURS: Final = {"p50": "tab:green", "p95": "tab:orange", "p99": "tab:red"}
_DPI: Final = 110


def latency_over_time(result: dict[str, Any], path: Path, *, title: str) -> bool:
    """Plot a result's measured seconds; False (nothing written) when it has none."""
    entries = [e for e in result.get("timeline", []) if e.get("phase") == "measure"]
    if not any(e.get("p50_ms") is not None for e in entries):
        return False
    start = entries[0]["t"] - 1.0  # an entry covers the second before its t
    seconds = [e["t"] - start for e in entries]
    figure = Figure(figsize=(9, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    latency, load = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    for name in ("p50", "p95", "p99"):
        values = [_nan(e.get(f"{name}_ms")) for e in entries]
        latency.plot(
            seconds, values, _STYLES[name], color=_COLOURS[name], label=name, marker=".", lw=1.5
        )
    latency.set_yscale("log")
    _plain_log_labels(latency.yaxis)
    latency.set_ylabel("latency per second (ms, log)")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(loc="upper left")
    latency.set_title(title, fontsize=10)

    load.bar(seconds, [e.get("samples") or 0 for e in entries], width=0.8, color="tab:blue")
    load.set_ylabel("samples/s", color="tab:blue")
    load.set_xlabel("seconds into the measured window")
    cpu = load.twinx()
    cpu.plot(seconds, [_nan(e.get("server_cpu_percent")) for e in entries], color="black", lw=1)
    cpu.set_ylabel("server CPU %")
    cpu.set_ylim(bottom=0)
    figure.savefig(path, dpi=_DPI)
    return True


def percentiles_by_load(rows: Sequence[Row], path: Path, *, title: str) -> bool:
    """Plot p50/p95/p99 against load (clients, or the rate when all ran with as many
    clients), a line per server and percentile; False (nothing written) unless the rows
    hold at least two loads."""
    x_of: Callable[[Row], float]
    if len({row.load for row in rows}) >= 2:
        x_of, x_label = attrgetter("load"), rows[0].load_name
    elif len({row.rate_hz for row in rows}) >= 2:
        x_of, x_label = attrgetter("rate_hz"), "edits/s per client"
    else:
        return False
    servers: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        servers[row.server].append(row)
    figure = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    colours = [f"C{i}" for i in range(10)]
    for index, (server, group) in enumerate(sorted(servers.items())):
        group = sorted(group, key=x_of)
        for name in ("p50", "p95", "p99"):
            axes.plot(
                [x_of(row) for row in group],
                [_nan(row.latency.get(name)) for row in group],
                _STYLES[name],
                color=colours[index % len(colours)],
                marker="o",
                label=f"{server} {name}",
            )
    axes.set_yscale("log")
    _plain_log_labels(axes.yaxis)
    axes.set_xticks(sorted({x_of(row) for row in rows}))  # the loads measured, no others
    axes.set_xlabel(x_label)
    axes.set_ylabel("latency (ms, log)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, ncols=max(1, len(servers)))
    axes.set_title(title, fontsize=10)
    figure.savefig(path, dpi=_DPI)
    return True


def _nan(value: object) -> float:
    """A gap in the line for a second without samples."""
    return float(value) if isinstance(value, int | float) and value > 0 else math.nan


def _plain_log_labels(axis: Axis) -> None:
    """Milliseconds as plain numbers (40, not 4x10^1); minor ticks labelled only while the
    axis spans few decades, where they are all there is to read."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
