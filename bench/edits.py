"""Small, realistic BPMN edits on a live document, and the ledger that times them.

What a modeler does most: rename a task (``elements[id].attrs.name``) and move its shape
(``di[shape].bounds``, one atomic value, see ``docs/crdt-schema.md``). Each editor owns its
own tasks, so no two editors race for one key: a lost race would leave an edit that no
observer can ever see, which would read as a lost update.

A rename carries its :class:`~bench.stamp.Stamp` in the name. A move has no text to carry
one, so the editor notes (room, shape, new bounds) -> send time in the :class:`Ledger`, and
the observer looks the bounds it sees up there: that needs driver and observers in one
process, which they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from pycrdt import Doc, Map

from bench.stamp import Stamp, stamp_name
from bpmn.document import ATTRS, BOUNDS, DI, ELEMENT, ELEMENTS, TYPE

LABELS: Final = (
    "Review order",
    "Approve invoice",
    "Check stock",
    "Ship goods",
    "Notify customer",
    "Archive case",
    "Assess risk",
    "Request approval",
)
_GRID: Final = (20, 10)  # a move walks 200 distinct positions before it repeats one
_STEP: Final = 10.0

Bounds = tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Target:
    """A task an editor may rename, with the shape it may move and where that shape starts."""

    task: str
    shape: str
    home: Bounds


def find_targets(doc: Doc[Any]) -> list[Target]:
    """Tasks of any kind (task, userTask, ...) that have a shape with bounds, sorted by id."""
    shapes: dict[str, tuple[str, Bounds]] = {}
    for key, entry in doc.get(DI, type=Map).items():
        if not isinstance(entry, Map):
            continue
        element, bounds = entry.get(ELEMENT), entry.get(BOUNDS)
        if isinstance(element, str) and isinstance(bounds, list) and len(bounds) == 4:
            shapes.setdefault(element, (key, tuple(float(v) for v in bounds)))
    targets = []
    elements = doc.get(ELEMENTS, type=Map)
    for key in sorted(elements.keys()):
        entry = elements[key]
        if not isinstance(entry, Map) or key not in shapes:
            continue
        kind = entry.get(TYPE)
        if (
            isinstance(kind, str)
            and kind.rpartition(":")[2].lower().endswith("task")
            and isinstance(entry.get(ATTRS), Map)
        ):
            shape, home = shapes[key]
            targets.append(Target(key, shape, home))
    return targets


def moved(home: Bounds, move: int) -> Bounds:
    """Where the ``move``-th move (from 0) puts a shape: a walk over a grid near its home,
    never the same place twice in a row, so every move is a visible change."""
    step = move % (_GRID[0] * _GRID[1]) + 1
    dx, dy = step % _GRID[0], (step // _GRID[0]) % _GRID[1]
    x, y, w, h = home
    return (x + dx * _STEP, y + dy * _STEP, w, h)


@dataclass(slots=True)
class Ledger:
    """What was sent when: moves by the bounds they set, and every send in order."""

    moves: dict[tuple[int, str, Bounds], int] = field(default_factory=dict)
    sent_ns: list[int] = field(default_factory=list)  # in send order: a lone writer's ordinals
    sent_by_room: dict[int, int] = field(default_factory=dict)

    def note(self, room: int, sent_ns: int, move: tuple[str, Bounds] | None = None) -> None:
        if move is not None:
            self.moves[(room, *move)] = sent_ns
        self.sent_ns.append(sent_ns)
        self.sent_by_room[room] = self.sent_by_room.get(room, 0) + 1

    def move_sent_ns(self, room: int, shape: str, bounds: Bounds) -> int | None:
        return self.moves.get((room, shape, bounds))


class EditingDoc:
    """An editor's own copy of the document, making one Yjs update per edit.

    It does not apply the other editors' updates: it only needs the items it edits, and
    skipping the rest keeps 1,000 editors cheap for the load generator. Its updates are
    still exactly what a full client would send for the same edit.
    """

    __slots__ = ("_di", "_doc", "_elements")

    def __init__(self, state: bytes) -> None:
        self._doc: Doc[Any] = Doc()
        self._doc.apply_update(state)
        self._elements = self._doc.get(ELEMENTS, type=Map)
        self._di = self._doc.get(DI, type=Map)

    @property
    def doc(self) -> Doc[Any]:
        return self._doc

    def rename(self, task: str, stamp: Stamp) -> bytes:
        name = stamp_name(LABELS[stamp.seq % len(LABELS)], stamp)
        before = self._doc.get_state()
        with self._doc.transaction():
            self._elements[task][ATTRS]["name"] = name
        return self._doc.get_update(before)

    def move(self, shape: str, bounds: Bounds) -> bytes:
        before = self._doc.get_state()
        with self._doc.transaction():
            self._di[shape][BOUNDS] = list(bounds)
        return self._doc.get_update(before)
