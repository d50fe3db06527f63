"""BPMN 2.0 XML -> document model, exactly as ``docs/crdt-schema.md`` lays it out.

:func:`parse` runs the safe XML gate (:mod:`bpmn.safe_xml`), refuses what is not BPMN
(:mod:`bpmn.tree`: the root must be ``definitions``, ids unique), then walks the tree once:

- a BPMN element with an id, or without one but holding elements with ids (or sharing its XSD
  rank with ordered siblings, see :meth:`_Reader.placements`), becomes an ``elements`` entry;
  its other BPMN children become ``text`` slots (no attributes, no child nodes), ``body`` slots
  (self-contained XML) or ``ext`` (the ``extensionElements``); ``incoming``/``outgoing`` of
  flow nodes are dropped (render derives them from the flows);
- BPMNDI diagrams, planes, shapes, edges and label styles become ``di`` entries
  (:mod:`bpmn.diagram_xml` reads their geometry);
- everything else becomes a ``raw`` entry, XML kept verbatim in its place.

What is odd but readable (a reference naming nothing, children out of XSD order, a prefix bound
to two URIs) becomes a :class:`~bpmn.model.ModelWarning`, never an error.
"""

from __future__ import annotations

from collections import Counter
from typing import Final, Literal

from lxml import etree

from bpmn.diagram_xml import DiagramReader
from bpmn.fragments import serialize
from bpmn.model import BpmnModel, DiEntry, Element, ModelWarning, RawEntry, RawSlot
from bpmn.order import spread_keys
from bpmn.qnames import NamespaceTable
from bpmn.references import dangling_references
from bpmn.safe_xml import parse_document
from bpmn.tree import (
    BPMN_NS,
    BPMNDI_NS,
    DC_NS,
    DI_KINDS,
    DI_NS,
    OPAQUE,
    attributes,
    require_definitions,
    source_line,
    unique_ids,
)
from bpmn.xsd_order import UNKNOWN_RANK, child_rank, has_child

__all__ = ["CHILD_ORDER", "parse"]

CHILD_ORDER: Final = "xml-child-order"

_MIB: Final = 1024 * 1024
_BPMN: Final = f"{{{BPMN_NS}}}"
_EXTENSION_ELEMENTS: Final = f"{_BPMN}extensionElements"
_DERIVED: Final = frozenset({f"{_BPMN}incoming", f"{_BPMN}outgoing"})
# Namespaces whose children the XSD orders; others are vendor content.
_SCHEMA_NAMESPACES: Final = frozenset({BPMN_NS, BPMNDI_NS, DC_NS, DI_NS})

_Kind = Literal["root", "element", "di"]
_Placement = Literal["entry", "raw", ""]  # "": a slot, geometry, a DI entry or raw, by kind
_RAW_SLOTS: Final[dict[_Kind, RawSlot]] = {"root": "", "element": "elements", "di": "di"}


def parse(
    xml: bytes,
    *,
    max_bytes: int = 32 * _MIB,
    max_depth: int = 256,
    max_elements: int = 500_000,
) -> BpmnModel:
    """The document model of untrusted BPMN 2.0 XML bytes.

    Raises the :func:`~bpmn.safe_xml.parse_document` errors, then
    :class:`~core.errors.NotBpmn` or :class:`~core.errors.DuplicateId` (with the lines).
    """
    tree = parse_document(xml, max_bytes=max_bytes, max_depth=max_depth, max_elements=max_elements)
    root = tree.getroot()
    require_definitions(root)
    ids = unique_ids(root, with_lines=True)
    return _Reader(root, set(ids)).model()


class _Reader:
    def __init__(self, root: etree._Element, ids: set[str]) -> None:
        self.root = root
        self.names = NamespaceTable(root)
        self.taken = ids  # element and DI keys in use: every id, then the synthetic keys
        self.elements: dict[str, Element] = {}
        self.di: dict[str, DiEntry] = {}
        self.raw: dict[str, RawEntry] = {}
        self.raw_counts: Counter[str] = Counter()
        self.lines: dict[str, int | None] = {}
        self.warnings: list[ModelWarning] = []

    def model(self) -> BpmnModel:
        root = self.root
        tag = self.names.tag(root, None)
        definitions = {self.names.attribute(root, name): value for name, value in attributes(root)}
        self.children(root, "", "root", None)
        model = BpmnModel(
            tag=tag,
            definitions=definitions,
            namespaces=self.names.pairs,
            elements=self.elements,
            di=self.di,
            raw=self.raw,
        )
        model.warnings = [
            *self.names.warnings,
            *self.warnings,
            *dangling_references(model, self.lines),
        ]
        return model

    # --- one parent's children --------------------------------------------------------------

    def children(
        self, parent: etree._Element, key: str, kind: _Kind, entry: Element | DiEntry | None
    ) -> None:
        if not len(parent):
            return  # most tasks and events: nothing to place
        parent_local = etree.QName(parent).localname
        self.check_order(parent, key)
        nodes = [child for child in parent if isinstance(child.tag, str)]  # no comments, PIs
        if isinstance(entry, Element):
            nodes = [
                child
                for child in nodes
                if child.tag not in _DERIVED or not has_child(parent_local, "incoming")
            ]  # incoming/outgoing of flow nodes: render writes them from the flows
        placements = self.placements(parent_local, kind, nodes)
        ordered: list[Element | DiEntry | RawEntry] = []
        slots: Counter[str] = Counter()  # text/body slot numbers, by qualified tag
        anon: Counter[str] = Counter()  # id-less siblings so far, by local name
        diagram = DiagramReader(self.names, parent, entry) if isinstance(entry, DiEntry) else None
        # Vendor XML has no rank: render places it next to its ordered siblings, so the
        # children after it must be ordered too (raw) to keep their place relative to it.
        after_vendor = False
        for child, placement in zip(nodes, placements, strict=True):
            qname = etree.QName(child)
            n = anon[qname.localname]
            if child.get("id") is None:
                anon[qname.localname] += 1
            if placement == "entry":
                ordered.append(self.element(parent, key, child, n))
                continue
            if not after_vendor and placement != "raw":
                if isinstance(entry, Element) and child.tag.startswith(_BPMN):
                    self.slot(entry, parent, child, slots)
                    continue
                if diagram is not None and diagram.take(child):
                    continue
            if kind != "element" and qname.namespace == BPMNDI_NS and qname.localname in DI_KINDS:
                ordered.append(self.diagram_entry(parent, key, child, n))
                continue
            ordered.append(self.raw_entry(key, _RAW_SLOTS[kind], child))
            after_vendor = after_vendor or qname.namespace not in _SCHEMA_NAMESPACES
        if diagram is not None:
            diagram.finish()
        for item, order in zip(ordered, spread_keys(len(ordered)), strict=True):
            item.order = order

    def placements(
        self, parent_local: str, kind: _Kind, nodes: list[etree._Element]
    ) -> list[_Placement]:
        """Which of a parent's children become ``elements`` entries, and which must be raw.

        An entry: a BPMN element with an id, or holding elements with ids. Under an element
        entry, also an id-less one whose XSD rank it shares with an ordered sibling (an entry,
        a raw child) or with a sibling of another tag (an id-less task among tasks, two kinds
        of event definition): text and body slots have no ``order`` to keep their place among
        those. An open container (``documentation`` ...) in such a rank cannot be an entry: raw.
        """
        if kind == "di":
            return [""] * len(nodes)
        candidates = [child.tag.startswith(_BPMN) and child.tag not in OPAQUE for child in nodes]
        entries = [
            candidate and (child.get("id") is not None or _holds_entries(child))
            for child, candidate in zip(nodes, candidates, strict=True)
        ]
        if kind == "root":
            return ["entry" if is_entry else "" for is_entry in entries]
        ranks: list[int | None] = []
        groups: dict[int, set[str]] = {}
        for child, is_entry in zip(nodes, entries, strict=True):
            qname = etree.QName(child)
            if qname.namespace not in _SCHEMA_NAMESPACES:
                ranks.append(None)  # vendor XML has no rank
                continue
            child_rank_ = child_rank(parent_local, qname.localname)
            ranks.append(child_rank_)
            # Entries and raw schema children (BPMNDI in a task) are ordered: one tag for all.
            ordered = is_entry or not child.tag.startswith(_BPMN)
            groups.setdefault(child_rank_, set()).add("\0ordered" if ordered else str(child.tag))
        mixed = {rank for rank, tags in groups.items() if len(tags) > 1}
        placements: list[_Placement] = []
        for child, candidate, is_entry, rank in zip(nodes, candidates, entries, ranks, strict=True):
            if is_entry or (candidate and rank in mixed):
                placements.append("entry")
            elif rank in mixed and child.tag in OPAQUE:
                placements.append("raw")
            else:
                placements.append("")
        return placements

    # --- entries ----------------------------------------------------------------------------

    def element(
        self,
        parent: etree._Element,
        parent_key: str,
        child: etree._Element,
        n: int,
    ) -> Element:
        local = etree.QName(child).localname
        key = child.get("id")
        if key is None:
            key = self.synthetic(f"~{parent_key}/{local}#{n}")
        names = self.names
        entry = Element(
            type=names.tag(child, parent),
            parent=parent_key,
            order="",
            attrs={
                names.attribute(child, name): value
                for name, value in attributes(child)
                if name != "id"
            },
            anon=child.get("id") is None,
        )
        text = _own_text(child)
        if text:
            entry.text["."] = text
        self.elements[key] = entry
        self.lines[key] = source_line(child)
        self.children(child, key, "element", entry)
        return entry

    def diagram_entry(
        self,
        parent: etree._Element,
        parent_key: str,
        child: etree._Element,
        n: int,
    ) -> DiEntry:
        local = etree.QName(child).localname
        key = child.get("id")
        element = child.get("bpmnElement")
        if key is None:
            preferred = f"~di/{element}" if element else None
            if preferred is not None and preferred not in self.taken:
                key = self.synthetic(preferred)
            else:
                key = self.synthetic(f"~di/{parent_key}/{local}#{n}")
        names = self.names
        entry = DiEntry(
            type=names.tag(child, parent),
            parent=parent_key,
            order="",
            element=element,
            attrs={
                names.attribute(child, name): value
                for name, value in attributes(child)
                if name not in ("id", "bpmnElement")
            },
            anon=child.get("id") is None,
        )
        self.di[key] = entry
        self.lines[key] = source_line(child)
        self.children(child, key, "di", entry)
        return entry

    def raw_entry(self, parent_key: str, slot: RawSlot, child: etree._Element) -> RawEntry:
        count = self.raw_counts[parent_key]
        key = f"{parent_key}/{count}"
        while key in self.raw:  # only if a parent key itself looks like "<key>/<n>"
            count += 1
            key = f"{parent_key}/{count}"
        self.raw_counts[parent_key] = count + 1
        entry = RawEntry(parent=parent_key, slot=slot, order="", xml=serialize(child))
        self.raw[key] = entry
        return entry

    def synthetic(self, key: str) -> str:
        unique, n = key, 1
        while unique in self.taken:
            unique, n = f"{key}~{n}", n + 1
        self.taken.add(unique)
        return unique

    def slot(
        self, entry: Element, parent: etree._Element, child: etree._Element, slots: Counter[str]
    ) -> None:
        if child.tag == _EXTENSION_ELEMENTS and entry.ext is None:
            entry.ext = serialize(child)
            return
        tag = self.names.tag(child, parent)
        slot = f"{tag}#{slots[tag]}"
        slots[tag] += 1
        if not len(child) and not child.attrib:
            entry.text[slot] = child.text or ""
        else:
            entry.body[slot] = serialize(child)

    # --- warnings ---------------------------------------------------------------------------

    def check_order(self, parent: etree._Element, key: str) -> None:
        """Warn once per parent whose schema children are not in XSD sequence order."""
        parent_local = etree.QName(parent).localname
        highest, previous = -1, ""
        for child in parent:
            if not isinstance(child.tag, str):
                continue
            qname = etree.QName(child)
            if qname.namespace not in _SCHEMA_NAMESPACES:
                continue
            rank = child_rank(parent_local, qname.localname)
            if rank == UNKNOWN_RANK:
                continue
            if rank < highest:
                self.warn(
                    CHILD_ORDER,
                    f"{parent_local} {key or '(definitions)'!r}: {qname.localname} comes after "
                    f"{previous}, against the XSD sequence; render writes the XSD order",
                    child,
                    key or None,
                )
                return
            highest, previous = rank, qname.localname

    def warn(self, code: str, message: str, node: etree._Element, key: str | None) -> None:
        self.warnings.append(ModelWarning(code, message, source_line(node), key))


def _holds_entries(element: etree._Element) -> bool:
    """Whether a BPMN element has descendants with ids the model keeps as entries."""
    stack = list(element)
    while stack:
        node = stack.pop()
        tag = node.tag
        if not isinstance(tag, str) or not tag.startswith(_BPMN) or tag in OPAQUE:
            continue
        if node.get("id") is not None:
            return True
        stack.extend(node)
    return False


def _own_text(element: etree._Element) -> str:
    """The element's character data, whitespace-only pieces (indentation) left out."""
    pieces = [element.text, *(child.tail for child in element)]
    return "".join(piece for piece in pieces if piece and not piece.isspace())
