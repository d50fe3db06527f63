"""What every reader of a BPMN 2.0 tree agrees on: namespaces, open containers, the root, ids.

Both :func:`bpmn.inspect.inspect_bpmn` (the REST gate) and :func:`bpmn.parse.parse` (XML to
document model) check a tree the same way, with the helpers here.

Content inside the schema's open containers (``extensionElements``, ``documentation``,
``script``, ``text`` and DI ``extension``) is the exporting tool's business, not the model's:
vendors put their own XML there, sometimes in the BPMN default namespace by accident (Visual
Paradigm nests ``<Model id>`` elements that repeat the ids of real ones). Such content is never
walked into, counted or checked for duplicate ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from lxml import etree

from core.errors import DuplicateId, NotBpmn

__all__ = [
    "BPMNDI_NS",
    "BPMN_NS",
    "DC_NS",
    "DEFINITIONS",
    "DI_KINDS",
    "DI_NS",
    "ID_NAMESPACES",
    "OPAQUE",
    "XML_NS",
    "XSI_NS",
    "attributes",
    "model_elements",
    "require_definitions",
    "source_line",
    "unique_ids",
]

BPMN_NS: Final = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS: Final = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS: Final = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS: Final = "http://www.omg.org/spec/DD/20100524/DI"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS: Final = "http://www.w3.org/XML/1998/namespace"

DEFINITIONS: Final = f"{{{BPMN_NS}}}definitions"
ID_NAMESPACES: Final = frozenset({BPMN_NS, BPMNDI_NS})
#: BPMNDI elements the document model keeps as ``di`` entries.
DI_KINDS: Final = frozenset({"BPMNDiagram", "BPMNPlane", "BPMNShape", "BPMNEdge", "BPMNLabelStyle"})
# Elements whose content the schema leaves open (xsd:any); see the module docstring.
OPAQUE: Final = frozenset(
    {
        f"{{{BPMN_NS}}}extensionElements",
        f"{{{BPMN_NS}}}documentation",
        f"{{{BPMN_NS}}}script",
        f"{{{BPMN_NS}}}text",
        f"{{{DI_NS}}}extension",
    }
)
_DUPLICATES_SHOWN: Final = 5


def attributes(element: etree._Element) -> list[tuple[str, str]]:
    """The attributes of ``element`` in document order, names in Clark notation."""
    return [(str(name), str(value)) for name, value in element.items()]


def source_line(node: object) -> int | None:
    """The line a node started on, when libxml2 knows it (lxml-stubs type it loosely)."""
    line = getattr(node, "sourceline", None)
    return line if isinstance(line, int) else None


def require_definitions(root: etree._Element) -> None:
    """Raise :class:`~core.errors.NotBpmn` unless ``root`` is BPMN 2.0 ``definitions``."""
    if root.tag != DEFINITIONS:
        raise NotBpmn(
            f"the root element must be {DEFINITIONS}, not {root.tag}",
            root=str(root.tag),
        )


def model_elements(root: etree._Element) -> Iterator[etree._Element]:
    """Every element in document order, not descending into open containers."""
    stack = [root]
    while stack:
        element = stack.pop()
        yield element
        if element.tag in OPAQUE:
            continue
        # Comments and processing instructions are children too; their tag is not a str.
        stack.extend(child for child in reversed(element) if isinstance(child.tag, str))


def unique_ids(root: etree._Element, *, with_lines: bool = False) -> dict[str, int | None]:
    """The ids of BPMN model and BPMNDI elements (open content aside), each with its line.

    Raises :class:`~core.errors.DuplicateId` when one is used twice; ``with_lines`` adds the
    lines of every use of the ids shown to the error.
    """
    first: dict[str, int | None] = {}
    repeats: dict[str, list[int | None]] = {}
    for element in model_elements(root):
        element_id = element.get("id")
        if element_id is None or etree.QName(element).namespace not in ID_NAMESPACES:
            continue
        if element_id in first:
            repeats.setdefault(element_id, [first[element_id]]).append(source_line(element))
        else:
            first[element_id] = source_line(element)
    if repeats:
        # In the order of first use, like the rest of the document's errors.
        shown = [element_id for element_id in first if element_id in repeats][:_DUPLICATES_SHOWN]
        lines = {element_id: repeats[element_id] for element_id in shown} if with_lines else None
        raise DuplicateId(shown, total=len(repeats), lines=lines)
    return first
