"""Where a child element belongs among its siblings, by the BPMN 2.0 XSD sequences.

Ranks come from the generated :mod:`bpmn.xsd_sequences` (``scripts/gen_xsd_order.py``).
Children that share a rank (the members of one substitution group, such as every
``flowElement``) may interleave; their relative order is the document's, kept in ``order``.
"""

from __future__ import annotations

from typing import Final

from bpmn.xsd_sequences import ELEMENT_TYPES, SEQUENCES

__all__ = ["UNKNOWN_RANK", "child_rank", "has_child", "type_of"]

# Past every real rank, so children the schema does not name for a parent sort last.
UNKNOWN_RANK: Final = 1_000_000

_RANKS_BY_TYPE: Final = {
    type_name: {name: rank for rank, slot in enumerate(slots) for name in slot}
    for type_name, slots in SEQUENCES.items()
}
# Looked up by the parent's element name on every child in render: one dict hop, not two.
_RANKS: Final[dict[str, dict[str, int]]] = {
    element: _RANKS_BY_TYPE[type_name]
    for element, type_name in ELEMENT_TYPES.items()
    if type_name in _RANKS_BY_TYPE
}
_NO_RANKS: Final[dict[str, int]] = {}


def type_of(local_name: str) -> str | None:
    """The XSD type local name of an element local name, or None when the schema has none."""
    return ELEMENT_TYPES.get(local_name)


def child_rank(parent_local_name: str, child_local_name: str) -> int:
    """The rank of ``child`` in the content sequence of ``parent``'s type.

    Lower ranks come first; :data:`UNKNOWN_RANK` for a child the type does not name
    (or a parent the schema does not know).
    """
    return _RANKS.get(parent_local_name, _NO_RANKS).get(child_local_name, UNKNOWN_RANK)


def has_child(parent_local_name: str, child_local_name: str) -> bool:
    """Whether ``parent``'s type names ``child`` in its content sequence."""
    return child_local_name in _RANKS.get(parent_local_name, _NO_RANKS)
