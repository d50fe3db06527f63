"""What the REST API checks about a BPMN 2.0 document before storing it.

:func:`inspect_bpmn` runs the safe XML gate, then checks that the root is BPMN
``definitions`` and that element ids are unique, and returns a small summary.
:func:`minimal_bpmn` makes the document a new, empty diagram starts from.

Content inside the schema's open containers is neither counted nor checked for
duplicate ids (see :mod:`bpmn.tree`, shared with :func:`bpmn.parse.parse`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

from lxml import etree

from bpmn.safe_xml import parse_document
from bpmn.tree import (
    BPMN_NS,
    BPMNDI_NS,
    DC_NS,
    DEFINITIONS,
    DI_NS,
    model_elements,
    require_definitions,
    unique_ids,
)
from core.errors import InvalidInput

__all__ = [
    "BPMNDI_NS",
    "BPMN_NS",
    "DC_NS",
    "DI_NS",
    "BpmnInfo",
    "inspect_bpmn",
    "minimal_bpmn",
]

_PROCESS: Final = f"{{{BPMN_NS}}}process"
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
    require_definitions(root)
    ids = unique_ids(root)
    element_count = sum(
        1
        for element in model_elements(root)
        if element is not root
        and element.get("id") is not None
        and etree.QName(element).namespace == BPMN_NS
    )
    process_ids = tuple(
        process_id
        for process in root.iterchildren(_PROCESS)
        if (process_id := process.get("id")) is not None
    )
    return BpmnInfo(
        element_count=element_count,
        process_ids=process_ids,
        target_namespace=root.get("targetNamespace"),
        ids=frozenset(ids),
    )


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
        DEFINITIONS,
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
