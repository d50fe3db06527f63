"""Latency samples and their percentiles.

Percentiles are nearest-rank over every sample (no histogram buckets, no interpolation): a
p99 of 41.2 ms means 99 % of the samples were at or below a sample of 41.2 ms. A run of
60 s at 1,000 edits/s is 60,000 floats, small enough to keep them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    if not ordered:
        raise ValueError("no samples")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {q}")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """count, p50/p95/p99, max and mean of samples in ms (rounded to µs); None when empty."""
    if not samples:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(samples)
    summary: dict[str, Any] = {"count": len(ordered)}
    for q in PERCENTILES:
        summary[f"p{q:g}"] = round(percentile(ordered, q), 3)
    summary["max"] = round(ordered[-1], 3)
    summary["mean"] = round(math.fsum(ordered) / len(ordered), 3)
    return summary


class Recorder:
    """All samples of a run, plus those since the last progress tick (for the live p99)."""

    __slots__ = ("_window", "samples")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._window: list[float] = []

    def add(self, value_ms: float) -> None:
        self.samples.append(value_ms)
        self._window.append(value_ms)

    def take_window(self) -> list[float]:
        window, self._window = self._window, []
        return window
