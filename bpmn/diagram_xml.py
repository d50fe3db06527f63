"""The geometry of one DI entry, read from XML: bounds, waypoints, label and font.

The model holds geometry as numbers only, so a geometry child goes into the entry only when
numbers say all it says: a ``dc:Bounds`` with exactly ``x y width height`` as finite doubles, a
``di:waypoint`` with exactly ``x y``, a ``BPMNLabel`` holding nothing but one such Bounds, a
``dc:Font`` with no content. An ``xsi:type`` naming the type the schema declares anyway
(``dc:Point`` on a waypoint, as Camunda's Eclipse plugin writes) says nothing and is dropped.
Anything else (a vendor attribute, a missing height, a label with a DI ``extension``) is not
guessed at: :class:`DiagramReader` declines it and the parser keeps it as a ``raw`` entry. Once
one child of a kind is declined, the later ones of that kind are too, so that render, which
writes model geometry before ``raw`` siblings of the same rank, keeps their order.
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from bpmn.geometry import parse_number
from bpmn.model import DiEntry
from bpmn.qnames import NamespaceTable
from bpmn.tree import BPMNDI_NS, DC_NS, DI_NS, XSI_NS, attributes
from bpmn.xsd_order import has_child

__all__ = ["DiagramReader", "redundant_type"]

BOUNDS: Final = f"{{{DC_NS}}}Bounds"
FONT: Final = f"{{{DC_NS}}}Font"
WAYPOINT: Final = f"{{{DI_NS}}}waypoint"
LABEL: Final = f"{{{BPMNDI_NS}}}BPMNLabel"
XSI_TYPE: Final = f"{{{XSI_NS}}}type"
_BOUNDS_ATTRIBUTES: Final = ("x", "y", "width", "height")
_POINT_ATTRIBUTES: Final = ("x", "y")
_DECLARED_TYPES: Final = {BOUNDS: "Bounds", WAYPOINT: "Point", FONT: "Font"}


def redundant_type(element: etree._Element) -> bool:
    """Whether ``element`` has an ``xsi:type`` naming the DC type its schema declares anyway."""
    value = element.get(XSI_TYPE)
    declared = _DECLARED_TYPES.get(str(element.tag))
    if value is None or declared is None:
        return False
    prefix, _, local = value.strip().rpartition(":")
    return local == declared and element.nsmap.get(prefix or None) == DC_NS


class DiagramReader:
    """Takes the geometry children of one DI element into its entry, or declines them."""

    def __init__(self, names: NamespaceTable, parent: etree._Element, entry: DiEntry) -> None:
        local = etree.QName(parent).localname
        self.names = names
        self.entry = entry
        self.bounds_open = has_child(local, "Bounds")
        self.label_open = has_child(local, "BPMNLabel")
        self.font_open = has_child(local, "Font")
        points = [_numbers(child, _POINT_ATTRIBUTES) for child in parent.iterchildren(WAYPOINT)]
        # All or none: render writes model waypoints as one run.
        self.waypoints_open = has_child(local, "waypoint") and None not in points
        if self.waypoints_open and points:
            entry.waypoints = []

    def take(self, child: etree._Element) -> bool:
        """Put ``child`` into the entry if the model can hold it exactly; say whether it did."""
        tag = child.tag
        entry = self.entry
        if tag == WAYPOINT and self.waypoints_open and entry.waypoints is not None:
            point = _numbers(child, _POINT_ATTRIBUTES)
            if point is not None:
                entry.waypoints.append(point)
                return True
        elif tag == BOUNDS and self.bounds_open:
            self.bounds_open = False
            entry.bounds = _numbers(child, _BOUNDS_ATTRIBUTES)
            return entry.bounds is not None
        elif tag == LABEL and self.label_open:
            self.label_open = False
            return self._label(child)
        elif tag == FONT and self.font_open:
            self.font_open = False
            if _empty(child):
                entry.font = {self.names.attribute(child, n): v for n, v in attributes(child)}
                return True
        return False

    def finish(self) -> None:
        """Call after the last child: an edge whose waypoints all went elsewhere has none."""
        if self.entry.waypoints == []:
            self.entry.waypoints = None

    def _label(self, label: etree._Element) -> bool:
        content = list(label)
        if not _text_free(label) or any(child.tag != BOUNDS for child in content):
            return False
        if len(content) > 1:
            return False
        bounds = _numbers(content[0], _BOUNDS_ATTRIBUTES) if content else []
        if bounds is None:
            return False
        self.entry.label = bounds
        self.entry.label_attrs = {self.names.attribute(label, n): v for n, v in attributes(label)}
        return True


def _numbers(element: etree._Element, names: tuple[str, ...]) -> list[float] | None:
    """The values of exactly the attributes ``names``, when all are finite doubles."""
    if not _empty(element):
        return None
    count = len(element.attrib) - (1 if redundant_type(element) else 0)
    if count != len(names):
        return None
    values = []
    for name in names:
        value = parse_number(element.get(name, ""))
        if value is None:
            return None
        values.append(value)
    return values


def _empty(element: etree._Element) -> bool:
    return not len(element) and _text_free(element)


def _text_free(element: etree._Element) -> bool:
    """No character data but whitespace, directly inside ``element``."""
    pieces = [element.text, *(child.tail for child in element)]
    return all(not piece or piece.isspace() for piece in pieces)
