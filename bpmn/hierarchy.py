"""Containment in the document: every entry's ``parent`` must lead to the top, and not too deep.

A client can delete a parent and leave its children, or (with concurrent moves) make two
entries each other's parent. :func:`rehome` finds those entries and gives each a new home, so
that render, which writes children inside their parent, reaches every entry exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Final, Protocol, TypeVar

__all__ = ["MAX_NESTING", "rehome"]

#: Entries nested deeper than this are re-homed: render recurses once per level, and a
#: document this deep is an attack or an accident, never a diagram.
MAX_NESTING: Final = 128
_ROUNDS: Final = 4


class _Child(Protocol):
    parent: str


_E = TypeVar("_E", bound=_Child)


def rehome(
    entries: MutableMapping[str, _E],
    home: Callable[[str, _E], str],
    what: str,
    warn: Callable[[str, str | None], None],
) -> None:
    """Give every entry whose parent is missing, cyclic or too deep the parent ``home`` picks.

    ``home`` should name a top-level entry or ``""``; if its choice is no better, a few rounds
    later the entry goes to the top.
    """
    for round_ in range(_ROUNDS + 1):
        broken = _broken(entries)
        if not broken:
            return
        for key in sorted(broken):
            entry = entries[key]
            target = home(key, entry) if round_ < _ROUNDS else ""
            warn(f"moved {what} {key!r} from missing or circular parent {entry.parent!r}", key)
            entry.parent = target if target != key else ""


def _broken(entries: MutableMapping[str, _E]) -> set[str]:
    """Keys to re-home: missing parent, one key per cycle, or the first level too deep."""
    depth: dict[str, int] = {"": 0}
    broken: set[str] = set()
    for start in entries:
        path: list[str] = []
        on_path: set[str] = set()
        key = start
        while key not in depth:
            if key in on_path:  # a cycle: cut it at its smallest key
                cycle = path[path.index(key) :]
                cut = min(cycle)
                broken.add(cut)
                depth[cut] = 1
                path = path[: path.index(cut)]
                break
            entry = entries.get(key)
            if entry is None:  # the parent of path[-1] does not exist
                broken.add(path[-1])
                depth[path.pop()] = 1
                break
            path.append(key)
            on_path.add(key)
            key = entry.parent
        # Unwind: each key on the path is one deeper than its parent.
        for key in reversed(path):
            level = depth[entries[key].parent] + 1 if entries[key].parent in depth else 1
            depth[key] = level
            if level > MAX_NESTING:
                broken.add(key)
                depth[key] = 1
    return broken
