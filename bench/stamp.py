"""Latency stamps carried inside an edit: which editor sent it, which of its edits, and when.

A rename carries its stamp in the new name (``"Approve invoice ~11.2a.1b3f9c..."``), so an
observer that sees the name in its document knows when it was sent without asking anyone:
that keeps the measurement honest (the edit itself made the trip) and works across processes
as long as they share a clock. The numbers are hex to keep the name short, as a real rename is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

SEPARATOR: Final = " ~"
# Strict on purpose: int(..., 16) alone would also take "+1", " 1" and "1_0".
_TAIL: Final = re.compile(r"([0-9a-f]+)\.([0-9a-f]+)\.([0-9a-f]+)")


@dataclass(frozen=True, slots=True)
class Stamp:
    editor: int
    seq: int
    sent_ns: int


def stamp_name(label: str, stamp: Stamp) -> str:
    if min(stamp.editor, stamp.seq, stamp.sent_ns) < 0:
        raise ValueError(f"stamp fields must be >= 0: {stamp}")
    return f"{label}{SEPARATOR}{stamp.editor:x}.{stamp.seq:x}.{stamp.sent_ns:x}"


def read_stamp(name: object) -> Stamp | None:
    """The stamp at the end of a name, or None for a name no benchmark wrote."""
    if not isinstance(name, str):
        return None
    _, separator, tail = name.rpartition(SEPARATOR)
    match = _TAIL.fullmatch(tail) if separator else None
    if match is None:
        return None
    editor, seq, sent_ns = (int(part, 16) for part in match.groups())
    return Stamp(editor, seq, sent_ns)
