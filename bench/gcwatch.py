"""The load generator's own garbage-collection pauses.

A full collection in a process holding 1,000 connections stops every client at once; its
length would read as server latency. Counting the pauses lets a reader tell the two apart.
"""

from __future__ import annotations

import gc
import time
from types import TracebackType
from typing import Any, Self

from bench.stats import summarize


class GcPauses:
    def __init__(self) -> None:
        self._started: float | None = None
        self.pauses_ms: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            generation = int(info.get("generation", 2))
            elapsed = (time.perf_counter() - self._started) * 1000
            self.pauses_ms.setdefault(generation, []).append(elapsed)
            self._started = None

    def __enter__(self) -> Self:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {
            f"gen{generation}": {
                **summarize(pauses),
                "total": round(sum(pauses), 1),
            }
            for generation, pauses in sorted(self.pauses_ms.items())
        }
