"""Errors by kind, with the first example of each: a count says how often, the example
says what to look for in the server's log."""

from __future__ import annotations

from collections import Counter


class Tally:
    __slots__ = ("counts", "examples")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def add(self, kind: str, example: str = "", count: int = 1) -> None:
        if count <= 0:
            return
        self.counts[kind] += count
        if example:
            self.examples.setdefault(kind, example[:300])

    @property
    def total(self) -> int:
        return sum(self.counts.values())
