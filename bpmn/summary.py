"""What a diagram listing shows about a document: counted from the model, never from XML."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from pycrdt import Doc

from bpmn.document import read
from bpmn.model import BpmnModel, Element

__all__ = ["DocSummary", "summary"]

_TITLED: Final = frozenset({"process", "participant"})
# A fragment's root start tag, attribute by attribute (a quoted value may hold ">" or "=").
_START_TAG: Final = re.compile(
    r"""\s*<([^\s/>]+)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*/?>"""
)
_ATTRIBUTE_NAME: Final = re.compile(r"""([^\s=]+)\s*=\s*(?:"[^"]*"|'[^']*')""")


@dataclass(frozen=True, slots=True)
class DocSummary:
    """``element_count`` counts BPMN elements with an id, not the root ``definitions`` (the rule
    of :attr:`bpmn.inspect.BpmnInfo.element_count`): the entries of ``elements`` without a
    synthetic key, plus the ``body`` and ``ext`` fragments whose root has an id (a
    ``documentation`` with an id is kept whole in ``body``, yet the XML gate counts it).
    ``types`` splits that count by local name (``task``, ``documentation``), in name order.
    ``titles`` are the names of processes and participants, in document order, each once."""

    element_count: int
    titles: tuple[str, ...]
    types: dict[str, int]


def summary(source: Doc[Any] | BpmnModel) -> DocSummary:
    model = read(source) if isinstance(source, Doc) else source
    counted = {key: element for key, element in model.elements.items() if not element.anon}
    types = Counter(_local_name(element.type) for element in counted.values())
    types.update(
        tag
        for element in counted.values()
        for fragment in (*element.body.values(), element.ext or "")
        if (tag := _tag_with_id(fragment)) is not None
    )
    titled = [key for key, element in counted.items() if _local_name(element.type) in _TITLED]
    titled.sort(key=lambda key: _position(model.elements, key))
    titles: dict[str, None] = {}  # a dict keeps the first of equal names, in order
    for key in titled:
        name = counted[key].attrs.get("name", "").strip()
        if name:
            titles.setdefault(name)
    return DocSummary(
        element_count=sum(types.values()),
        titles=tuple(titles),
        types=dict(sorted(types.items())),
    )


def _tag_with_id(fragment: str) -> str | None:
    """The local name of ``fragment``'s root when the root has an id."""
    start = _START_TAG.match(fragment)
    if start is None or "id" not in _ATTRIBUTE_NAME.findall(start.group(2)):
        return None
    return _local_name(start.group(1))


def _local_name(tag: str) -> str:
    return tag.rpartition(":")[2]


def _position(elements: dict[str, Element], key: str) -> list[tuple[str, str]]:
    """Where ``key`` sits in the document: the order keys of its ancestors, top first."""
    path: list[tuple[str, str]] = []
    seen: set[str] = set()
    # A client may have left a parent cycle; stop at the first repeat instead of looping.
    while key in elements and key not in seen:
        seen.add(key)
        path.append((elements[key].order, key))
        key = elements[key].parent
    path.reverse()
    return path
