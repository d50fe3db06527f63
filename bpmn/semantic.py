"""A canonical form of BPMN 2.0 XML, to tell whether two documents say the same thing.

Built straight from the lxml tree, never through the document model, so that comparing
``canonical(render(parse(xml)))`` with ``canonical(xml)`` is an honest check of the round trip.
It is one line per element, depth-first, indented by depth:

- schema elements (BPMN, BPMNDI, DC, DI namespaces) by namespace URI and local name, ``#id``,
  attributes by namespace URI and local name (prefixes and declarations do not count), and
  their own non-whitespace text;
- children in XSD sequence order: a stable sort by the rank their parent's type gives them; a
  vendor child takes the rank of the schema sibling after it (or goes last), so it keeps its
  place before that sibling;
- diagram numbers (``x``, ``y``, ``width``, ``height`` of bounds and waypoints) as floats, and
  no ``xsi:type`` on a bounds, waypoint or font that names the type the schema declares anyway;
- open content (``extensionElements``, ``documentation``, ``script``, ``text``, DI
  ``extension``) and vendor elements as canonical XML by expanded names (exclusive C14N
  without prefixes), comments left out;
- ``incoming``/``outgoing`` of flow nodes left out (they restate the flows);
- with ``drop_dangling_di``, shapes and edges whose ``bpmnElement`` names no element left out
  (render's repair pass drops them).

Whitespace-only text, comments, processing instructions outside open content, and where
namespaces are declared are ignored.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Final

from lxml import etree

from bpmn.geometry import parse_number
from bpmn.safe_xml import parse_document
from bpmn.tree import BPMN_NS, BPMNDI_NS, DC_NS, DI_NS, OPAQUE, XSI_NS, model_elements
from bpmn.xsd_order import UNKNOWN_RANK, child_rank, has_child

__all__ = ["Canonical", "canonical"]

_SCHEMA_NAMESPACES: Final = frozenset({BPMN_NS, BPMNDI_NS, DC_NS, DI_NS})
_NUMBERS: Final = {
    f"{{{DC_NS}}}Bounds": frozenset({"x", "y", "width", "height"}),
    f"{{{DI_NS}}}waypoint": frozenset({"x", "y"}),
}
_DECLARED: Final = {
    f"{{{DC_NS}}}Bounds": "Bounds",
    f"{{{DI_NS}}}waypoint": "Point",
    f"{{{DC_NS}}}Font": "Font",
}
_DERIVED: Final = frozenset({f"{{{BPMN_NS}}}incoming", f"{{{BPMN_NS}}}outgoing"})
_DRAWN: Final = frozenset({f"{{{BPMNDI_NS}}}BPMNShape", f"{{{BPMNDI_NS}}}BPMNEdge"})
_XSI_TYPE: Final = f"{{{XSI_NS}}}type"
# Short labels for the schema's namespaces in the lines (by URI: prefixes never count).
_LABELS: Final = {
    f"{{{BPMN_NS}}}": "bpmn:",
    f"{{{BPMNDI_NS}}}": "bpmndi:",
    f"{{{DC_NS}}}": "dc:",
    f"{{{DI_NS}}}": "di:",
}
_LIMITS: Final = {"max_bytes": 64 * 1024 * 1024, "max_depth": 512, "max_elements": 2_000_000}


@dataclass(frozen=True, slots=True)
class Canonical:
    """The canonical lines of a document; equal when the documents say the same."""

    lines: tuple[str, ...]

    def differences(self, other: Canonical, limit: int = 40) -> list[str]:
        """The first ``limit`` lines of a unified diff from ``self`` to ``other``."""
        diff = difflib.unified_diff(self.lines, other.lines, "source", "rendered", lineterm="", n=1)
        return [line for _, line in zip(range(limit), diff, strict=False)]


def canonical(xml: bytes, *, drop_dangling_di: bool = False) -> Canonical:
    """The canonical form of ``xml`` (see the module docstring).

    Raises what :func:`~bpmn.safe_xml.parse_document` raises.
    """
    root = parse_document(xml, **_LIMITS).getroot()
    ids: frozenset[str] | None = None
    if drop_dangling_di:
        ids = frozenset(
            str(element.get("id"))
            for element in model_elements(root)
            if element.get("id") is not None and etree.QName(element).namespace == BPMN_NS
        )
    lines: list[str] = []
    _walk(root, 0, lines, ids)
    return Canonical(tuple(lines))


def _walk(
    element: etree._Element, depth: int, lines: list[str], ids: frozenset[str] | None
) -> None:
    indent = "  " * depth
    tag = str(element.tag)
    head = f"{indent}{_label(tag)}"
    element_id = element.get("id")
    if element_id is not None:
        head += f" #{element_id}"
    head += _attributes(element)
    if tag in OPAQUE:
        lines.append(f"{head} content={_content(element)!r}")
        return
    text = "".join(piece for piece in _text_pieces(element) if not piece.isspace())
    lines.append(f"{head} text={text!r}" if text else head)
    for child in _children(element, ids):
        if etree.QName(child).namespace in _SCHEMA_NAMESPACES:
            _walk(child, depth + 1, lines, ids)
        else:
            lines.append(f"{indent}  vendor {_c14n(child)}")


def _children(element: etree._Element, ids: frozenset[str] | None) -> list[etree._Element]:
    parent_local = etree.QName(element).localname
    derived = has_child(parent_local, "incoming")
    children: list[etree._Element] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        if derived and child.tag in _DERIVED:
            continue
        if ids is not None and child.tag in _DRAWN:
            reference = child.get("bpmnElement")
            if reference is not None and reference.rpartition(":")[2] not in ids:
                continue
        children.append(child)
    ranks: list[int | None] = []
    for child in children:
        qname = etree.QName(child)
        known = qname.namespace in _SCHEMA_NAMESPACES
        ranks.append(child_rank(parent_local, qname.localname) if known else None)
    # Vendor children keep to the schema sibling after them; with none, they go last.
    filled: list[int] = []
    following = UNKNOWN_RANK
    for rank in reversed(ranks):
        following = following if rank is None else rank
        filled.append(following)
    filled.reverse()
    order = sorted(range(len(children)), key=lambda index: filled[index])
    return [children[index] for index in order]


def _label(tag: str) -> str:
    namespace, brace, local = tag.rpartition("}")
    label = _LABELS.get(namespace + brace)
    return label + local if label is not None else tag


def _attributes(element: etree._Element) -> str:
    numeric = _NUMBERS.get(str(element.tag), frozenset())
    items: list[tuple[str, str]] = []
    for name, value in element.items():
        key, text = str(name), str(value)
        if key == "id":
            continue
        if key == _XSI_TYPE and _names_declared_type(element, text):
            continue
        if key in numeric:
            number = parse_number(text)
            text = repr(number) if number is not None else text
        items.append((key, text))
    return "".join(f" {key}={value!r}" for key, value in sorted(items))


def _names_declared_type(element: etree._Element, value: str) -> bool:
    declared = _DECLARED.get(str(element.tag))
    prefix, _, local = value.strip().rpartition(":")
    return declared == local and element.nsmap.get(prefix or None) == DC_NS


def _text_pieces(element: etree._Element) -> list[str]:
    return [piece for piece in (element.text, *(child.tail for child in element)) if piece]


def _content(element: etree._Element) -> str:
    """Open content as written: text, and child elements in exclusive C14N."""
    parts = [element.text or ""]
    for child in element:
        if isinstance(child.tag, str):
            parts.append(_c14n(child))
        parts.append(child.tail or "")
    content = "".join(parts)
    return "" if content.isspace() else content


def _c14n(element: etree._Element) -> str:
    """``element`` canonically: expanded names, sorted attributes, no comments.

    Like exclusive C14N without prefixes; libxml2's C14N refuses documents with relative
    namespace URIs in scope (Adonis and iGrafx declare ``@boc-eu.com/...``), this does not.
    """
    parts: list[str] = []
    _canonical_xml(element, parts)
    return "".join(parts)


def _canonical_xml(element: etree._Element, parts: list[str]) -> None:
    attributes = sorted((str(name), str(value)) for name, value in element.items())
    parts.append(f"<{element.tag}{''.join(f' {k}={v!r}' for k, v in attributes)}>")
    parts.append(_escape(element.text or ""))
    for child in element:
        if isinstance(child.tag, str):
            _canonical_xml(child, parts)
        elif isinstance(child, etree._ProcessingInstruction):
            parts.append(f"<?{child.target} {child.text or ''}?>")
        parts.append(_escape(child.tail or ""))
    parts.append(f"</{element.tag}>")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
