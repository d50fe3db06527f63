"""What a peer server's room is seeded with: peers have no REST API to create a diagram, so
the driver builds the room's first document itself and pushes it (:class:`bench.target.PeerTarget`).

The document is built from the BPMN XML exactly as our server builds a room's first state
(:func:`bpmn.parse.parse`, then :func:`bpmn.document.load`; see ``server/documents.py``), so
every kind of server starts the measurement from the same CRDT content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map

from bpmn.document import ELEMENTS, load
from bpmn.parse import parse


@dataclass(frozen=True, slots=True)
class Seed:
    """A diagram as a room's first CRDT state, and how many BPMN elements it holds."""

    state: bytes
    elements: int


def seed_from_xml(xml: bytes) -> Seed:
    doc = load(parse(xml))
    return Seed(doc.get_update(), len(doc.get(ELEMENTS, type=Map)))


def element_count(state: bytes) -> int:
    """BPMN elements in a document state (0 for an empty document)."""
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    return len(doc.get(ELEMENTS, type=Map))
