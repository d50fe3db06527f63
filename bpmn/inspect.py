"""What the REST API checks about a BPMN 2.0 document before storing it.

:func:`inspect_bpmn` runs the safe XML gate, then checks that the root is BPMN
``definitions`` and that element ids are unique, and returns a small summary.
:func:`minimal_bpmn` makes the document a new, empty diagram starts from.

Content inside the schema's open containers (``extensionElements``,
``documentation``, ``script``, ``text`` and DI ``extension``) is the exporting
tool's business, not the model's: vendors put their own XML there, sometimes
in the BPMN default namespace by accident (Visual Paradigm nests ``<Model id>``
elements that repeat the ids of real ones). Such content is neither counted nor
checked for duplicate ids.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from lxml import etree

from bpmn.safe_xml import parse_document
from core.errors import DuplicateId, InvalidInput, NotBpmn

__all__ = [
    "BPMNDI_NS",
    "BPMN_NS",
    "DC_NS",
    "DI_NS",
    "BpmnInfo",
    "inspect_bpmn",
    "minimal_bpmn",
]

BPMN_NS: Final = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS: Final = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS: Final = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS: Final = "http://www.omg.org/spec/DD/20100524/DI"

_DEFINITIONS: Final = f"{{{BPMN_NS}}}definitions"
_PROCESS: Final = f"{{{BPMN_NS}}}process"
_ID_NAMESPACES: Final = frozenset({BPMN_NS, BPMNDI_NS})
# Elements whose content the schema leaves open (xsd:any); see the module docstring.
_OPAQUE: Final = frozenset(
    {
        f"{{{BPMN_NS}}}extensionElements",
        f"{{{BPMN_NS}}}documentation",
        f"{{{BPMN_NS}}}script",
        f"{{{BPMN_NS}}}text",
        f"{{{DI_NS}}}extension",
    }
)
_DUPLICATES_SHOWN: Final = 5
# Written by hand: lxml's own declaration uses single quotes, which some tools frown on.
_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True, slots=True)
class BpmnInfo:
    """Summary of an accepted BPMN document.

    ``element_count`` counts BPMN model elements that carry an ``id``, not the
    root ``definitions``. ``process_ids`` are the top-level processes in
    document order. ``ids`` holds every model and BPMNDI id, the root's included.
    """

    element_count: int
    process_ids: tuple[str, ...]
    target_namespace: str | None
    ids: frozenset[str]


def inspect_bpmn(xml: bytes, *, max_bytes: int, max_depth: int, max_elements: int) -> BpmnInfo:
    """Check untrusted bytes are a BPMN 2.0 document and summarise it.

    Raises the :func:`~bpmn.safe_xml.parse_document` errors, then
    :class:`~core.errors.NotBpmn` or :class:`~core.errors.DuplicateId`.
    """
    tree = parse_document(xml, max_bytes=max_bytes, max_depth=max_depth, max_elements=max_elements)
    root = tree.getroot()
    if root.tag != _DEFINITIONS:
        raise NotBpmn(
            f"the root element must be {_DEFINITIONS}, not {root.tag}",
            root=str(root.tag),
        )
    element_count = 0
    seen: Counter[str] = Counter()
    for element in _model_elements(root):
        element_id = element.get("id")
        if element_id is None:
            continue
        namespace = etree.QName(element).namespace
        if namespace in _ID_NAMESPACES:
            seen[element_id] += 1
        if namespace == BPMN_NS and element is not root:
            element_count += 1
    duplicates = [element_id for element_id, uses in seen.items() if uses > 1]
    if duplicates:
        raise DuplicateId(duplicates[:_DUPLICATES_SHOWN], total=len(duplicates))
    process_ids = tuple(
        process_id
        for process in root.iterchildren(_PROCESS)
        if (process_id := process.get("id")) is not None
    )
    return BpmnInfo(
        element_count=element_count,
        process_ids=process_ids,
        target_namespace=root.get("targetNamespace"),
        ids=frozenset(seen),
    )


def _model_elements(root: etree._Element) -> Iterator[etree._Element]:
    """Every element in document order, not descending into open containers."""
    stack = [root]
    while stack:
        element = stack.pop()
        yield element
        if element.tag in _OPAQUE:
            continue
        # Comments and processing instructions are children too; their tag is not a str.
        stack.extend(child for child in reversed(element) if isinstance(child.tag, str))


def minimal_bpmn(process_name: str | None = None) -> bytes:
    """A new diagram: one process with one start event, and its drawing.

    Ids end in a random suffix so that elements copied between two new diagrams
    do not collide. Raises :class:`~core.errors.InvalidInput` if ``process_name``
    holds characters XML cannot carry (control characters, NUL).
    """
    suffix = secrets.token_hex(4)
    process_id = f"Process_{suffix}"
    start_id = f"StartEvent_{suffix}"
    definitions = etree.Element(
        _DEFINITIONS,
        nsmap={"bpmn": BPMN_NS, "bpmndi": BPMNDI_NS, "dc": DC_NS, "di": DI_NS},
        id=f"Definitions_{suffix}",
        targetNamespace="http://bpmn.io/schema/bpmn",
    )
    process = etree.SubElement(definitions, _PROCESS, id=process_id, isExecutable="false")
    if process_name is not None:
        try:
            process.set("name", process_name)
        except ValueError:
            raise InvalidInput(
                "the process name holds characters XML cannot carry", field="processName"
            ) from None
    etree.SubElement(process, f"{{{BPMN_NS}}}startEvent", id=start_id)
    diagram = etree.SubElement(
        definitions, f"{{{BPMNDI_NS}}}BPMNDiagram", id=f"BPMNDiagram_{suffix}"
    )
    plane = etree.SubElement(
        diagram, f"{{{BPMNDI_NS}}}BPMNPlane", id=f"BPMNPlane_{suffix}", bpmnElement=process_id
    )
    shape = etree.SubElement(
        plane, f"{{{BPMNDI_NS}}}BPMNShape", id=f"{start_id}_di", bpmnElement=start_id
    )
    # 36 x 36 is the size every BPMN tool draws a start event at.
    etree.SubElement(shape, f"{{{DC_NS}}}Bounds", x="152", y="82", width="36", height="36")
    body = etree.tostring(definitions, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    return _XML_DECLARATION + body
