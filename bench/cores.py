"""Which cores the server under test and the load generator get, so neither steals the
other's CPU time while ``bpmn-collab bench compare`` runs.

The server is pinned when it starts (``taskset``, :class:`bench.servers.ServerProcess`); the
driver pins itself, every thread of its process, for the duration and restores each
thread's own set afterwards. With a single core there is nothing to split, and the split
says so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_TASKS: Final = Path("/proc/self/task")


@dataclass(frozen=True, slots=True)
class CoreSplit:
    server: tuple[int, ...]  # empty: not pinned
    driver: tuple[int, ...]

    @property
    def pinned(self) -> bool:
        return bool(self.server)

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned: a single core available, server and load generator share it"
        return (
            f"server pinned to core(s) {_list(self.server)} (taskset), load generator to "
            f"core(s) {_list(self.driver)} (sched_setaffinity on its own process)"
        )


def split_cores(available: Iterable[int]) -> CoreSplit:
    """The lower half of the cores for the server (at least one), the rest for the driver:
    on a 2-core machine the server gets core 0 and the driver core 1."""
    cores = sorted(set(available))
    if len(cores) < 2:
        return CoreSplit((), ())
    half = len(cores) // 2
    return CoreSplit(tuple(cores[:half]), tuple(cores[half:]))


def available_cores() -> set[int]:
    """The cores this process may run on (a container or taskset may allow fewer than
    ``os.cpu_count()``)."""
    return set(os.sched_getaffinity(0))


@contextlib.contextmanager
def driver_pinned(cores: tuple[int, ...]) -> Iterator[None]:
    """Every thread of this process on ``cores`` inside the block (threads started
    meanwhile inherit it), each back on its own set after; nothing when ``cores`` is empty.
    ``sched_setaffinity(0)`` alone would move the calling thread only."""
    if not cores:
        yield
        return
    own = os.sched_getaffinity(0)
    saved = {tid: _affinity(tid) for tid in _threads()}
    try:
        for tid in saved:
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(tid, cores)
        yield
    finally:
        for tid in _threads():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, saved.get(tid) or own)


def _threads() -> list[int]:
    return [int(name) for name in os.listdir(_TASKS) if name.isdigit()]


def _affinity(tid: int) -> set[int] | None:
    try:
        return set(os.sched_getaffinity(tid))
    except ProcessLookupError:
        return None


def _list(cores: tuple[int, ...]) -> str:
    return ",".join(map(str, cores))
