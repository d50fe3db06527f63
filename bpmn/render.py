"""Document model -> BPMN 2.0 XML: deterministic, whatever a client wrote into the model.

:func:`render` runs :func:`~bpmn.repair.repair` first, then writes UTF-8 XML in one pass:

- every namespace of ``meta.namespaces`` is declared on the root, in its order;
- an entry's children are written in the XSD sequence order of its type
  (:func:`~bpmn.xsd_order.child_rank`); within one rank, the children without an ``order``
  (text and body slots, ``ext``, geometry, ``incoming``/``outgoing``) come first, by tag and
  slot number, then the ordered ones (entries and ``raw``) by ``order`` (ties by key);
- a ``raw`` child whose XML the schema places (``bpmn:import`` under ``definitions``,
  ``di:extension`` in a shape) takes that rank; vendor XML takes the rank of the next ordered
  sibling (or goes last), so it stays right before the sibling it preceded;
- ``incoming`` and ``outgoing`` of flow nodes are written from the sequence flows'
  ``sourceRef`` and ``targetRef``;
- numbers are written without a fraction when integral; attributes ``id`` first, then by name.

The same model always gives the same bytes; dict order does not matter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final

from bpmn.fragments import embed, read_fragment
from bpmn.geometry import format_number
from bpmn.model import BpmnModel, DiEntry, Element, RawEntry
from bpmn.qnames import local_name, prefix_of
from bpmn.references import di_target
from bpmn.repair import repair
from bpmn.tree import BPMN_NS, BPMNDI_NS, DC_NS, DI_NS
from bpmn.xsd_order import UNKNOWN_RANK, child_rank, has_child

__all__ = ["render", "repair"]

_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'
_SCHEMA_NAMESPACES: Final = frozenset({BPMN_NS, BPMNDI_NS, DC_NS, DI_NS})
_ATTRIBUTE: Final = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)
_TEXT: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_INDENT: Final = "  "
_ROOT: Final = ("root", "")
_KINDS: Final = {Element: 0, DiEntry: 1, RawEntry: 2}

_Write = Callable[[int], None]
_Item = tuple[tuple[int, int, str, int, int], _Write]
_Child = tuple[str, str, Element | DiEntry | RawEntry]  # (order, key, entry)


def render(model: BpmnModel) -> bytes:
    """The BPMN 2.0 XML of ``model`` (after :func:`~bpmn.repair.repair`), as UTF-8 bytes."""
    return _Writer(repair(model)).document().encode("utf-8")


class _Writer:
    def __init__(self, model: BpmnModel) -> None:
        self.model = model
        self.namespaces = dict(model.namespaces)
        self.prefixes: dict[str, str] = {}  # URI -> first prefix bound to it
        for prefix, uri in model.namespaces:
            self.prefixes.setdefault(uri, prefix)
        self.out: list[str] = []
        # (map, parent key) -> children; the root's children come from all three maps.
        self.children: dict[tuple[str, str], list[_Child]] = defaultdict(list)
        for key, element in model.elements.items():
            where = ("elements", element.parent) if element.parent else _ROOT
            self.children[where].append((element.order, key, element))
        for key, entry in model.di.items():
            where = ("di", entry.parent) if entry.parent else _ROOT
            self.children[where].append((entry.order, key, entry))
        for key, raw in model.raw.items():
            where = (raw.slot, raw.parent) if raw.slot else _ROOT
            self.children[where].append((raw.order, key, raw))
        self.incoming, self.outgoing = _flows(model.elements)

    def document(self) -> str:
        model, out = self.model, self.out
        out.append(f"{_DECLARATION}<{model.tag}")
        for prefix, uri in model.namespaces:
            out.append(f' xmlns{":" if prefix else ""}{prefix}="{uri.translate(_ATTRIBUTE)}"')
        out.append(_attributes(model.definitions, first=("id",)))
        items = self.ordered(local_name(model.tag), self.children.get(_ROOT, []))
        self.close(model.tag, items, 1)
        out.append("\n")
        return "".join(out)

    def close(self, tag: str, items: list[_Item], depth: int, text: str = "") -> None:
        """Finish a start tag: ``/>``, or ``>``, the content and the end tag.

        ``depth`` is the children's. An element with text of its own is written without
        indentation, which would change that text.
        """
        out = self.out
        if not items and not text:
            out.append("/>")
            return
        out.append(">")
        if text:
            out.append(text.translate(_TEXT))
        items.sort(key=lambda item: item[0])
        indent = "" if text else "\n" + _INDENT * depth
        for _, write in items:
            out.append(indent)
            write(depth)
        if indent and items:
            out.append(f"\n{_INDENT * (depth - 1)}")
        out.append(f"</{tag}>")

    # --- ordered children -------------------------------------------------------------------

    def ordered(self, parent_local: str, children: list[_Child]) -> list[_Item]:
        if not children:
            return []
        # Ties by key, then by map: under the root an element and a raw entry may share both.
        children = sorted(children, key=lambda child: (child[0], child[1], _KINDS[type(child[2])]))
        ranks: list[int | None] = [self.rank(parent_local, entry) for _, _, entry in children]
        _stick(ranks)
        items: list[_Item] = []
        for position, ((_, key, entry), rank) in enumerate(zip(children, ranks, strict=True)):
            write: _Write
            if isinstance(entry, Element):
                write = partial(self.element, key, entry)
            elif isinstance(entry, DiEntry):
                write = partial(self.diagram, key, entry)
            else:
                write = partial(self.raw, entry.xml)
            items.append(((UNKNOWN_RANK if rank is None else rank, 1, "", position, 0), write))
        return items

    def rank(self, parent_local: str, entry: Element | DiEntry | RawEntry) -> int | None:
        """The XSD rank of an ordered child; None for vendor XML, which sticks to a neighbour."""
        if not isinstance(entry, RawEntry):
            return child_rank(parent_local, local_name(entry.type))
        fragment = read_fragment(entry.xml)
        if fragment is None or fragment.namespace not in _SCHEMA_NAMESPACES:
            return None
        return child_rank(parent_local, fragment.local)

    def raw(self, xml: str, depth: int) -> None:
        fragment = read_fragment(xml)
        if fragment is not None:  # repair let only well-formed fragments through
            self.out.append(embed(fragment, self.namespaces))

    # --- semantic elements ------------------------------------------------------------------

    def element(self, key: str, entry: Element, depth: int) -> None:
        out = self.out
        out.append(f"<{entry.type}")
        if not entry.anon:
            out.append(f' id="{key.translate(_ATTRIBUTE)}"')
        out.append(_attributes(entry.attrs))
        local = local_name(entry.type)
        items = self.ordered(local, self.children.get(("elements", key), []))
        for slot, value in entry.text.items():
            if slot != ".":
                tag, n = _slot(slot)
                rank = child_rank(local, local_name(tag))
                items.append(((rank, 0, tag, n, 0), partial(self.text, tag, value)))
        for slot, xml in entry.body.items():
            tag, n = _slot(slot)
            rank = child_rank(local, local_name(tag))
            items.append(((rank, 0, tag, n, 1), partial(self.raw, xml)))
        if entry.ext is not None:
            rank = child_rank(local, "extensionElements")
            items.append(((rank, 0, "", -1, 0), partial(self.raw, entry.ext)))
        prefix = prefix_of(entry.type)
        if has_child(local, "incoming") and self.namespaces.get(prefix) == BPMN_NS:
            for name, flows in (("incoming", self.incoming), ("outgoing", self.outgoing)):
                tag = f"{prefix}:{name}" if prefix else name
                rank = child_rank(local, name)
                for n, flow in enumerate(flows.get(key, ())):
                    items.append(((rank, 0, "", n, 0), partial(self.text, tag, flow)))
        self.close(entry.type, items, depth + 1, entry.text.get(".", ""))

    def text(self, tag: str, value: str, depth: int) -> None:
        self.out.append(f"<{tag}>{value.translate(_TEXT)}</{tag}>" if value else f"<{tag}/>")

    # --- diagram elements -------------------------------------------------------------------

    def diagram(self, key: str, entry: DiEntry, depth: int) -> None:
        out = self.out
        out.append(f"<{entry.type}")
        if not entry.anon:
            out.append(f' id="{key.translate(_ATTRIBUTE)}"')
        if entry.element is not None:
            out.append(f' bpmnElement="{entry.element.translate(_ATTRIBUTE)}"')
        out.append(_attributes(entry.attrs))
        local = local_name(entry.type)
        items = self.ordered(local, self.children.get(("di", key), []))
        if entry.bounds is not None:
            rank = child_rank(local, "Bounds")
            items.append(((rank, 0, "", 0, 0), partial(self.bounds, entry.bounds)))
        for n, (x, y) in enumerate(entry.waypoints or ()):
            rank = child_rank(local, "waypoint")
            items.append(((rank, 0, "", n, 0), partial(self.point, x, y)))
        if entry.label is not None:
            rank = child_rank(local, "BPMNLabel")
            items.append(((rank, 0, "", 0, 0), partial(self.label, entry)))
        if entry.font is not None:
            tag = self.qualified(DC_NS, "Font")
            write = partial(self.empty, tag, _attributes(entry.font))
            items.append(((child_rank(local, "Font"), 0, "", 0, 0), write))
        self.close(entry.type, items, depth + 1)

    def qualified(self, uri: str, local: str) -> str:
        prefix = self.prefixes.get(uri, "")
        return f"{prefix}:{local}" if prefix else local

    def empty(self, tag: str, attributes: str, depth: int) -> None:
        self.out.append(f"<{tag}{attributes}/>")

    def bounds(self, bounds: list[float], depth: int) -> None:
        x, y, width, height = (format_number(value) for value in bounds)
        tag = self.qualified(DC_NS, "Bounds")
        self.out.append(f'<{tag} x="{x}" y="{y}" width="{width}" height="{height}"/>')

    def point(self, x: float, y: float, depth: int) -> None:
        tag = self.qualified(DI_NS, "waypoint")
        self.out.append(f'<{tag} x="{format_number(x)}" y="{format_number(y)}"/>')

    def label(self, entry: DiEntry, depth: int) -> None:
        prefix = prefix_of(entry.type)
        if self.namespaces.get(prefix) == BPMNDI_NS:
            tag = f"{prefix}:BPMNLabel" if prefix else "BPMNLabel"
        else:
            tag = self.qualified(BPMNDI_NS, "BPMNLabel")
        self.out.append(f"<{tag}{_attributes(entry.label_attrs, first=('id',))}")
        items: list[_Item] = []
        if entry.label:
            items.append(((0, 0, "", 0, 0), partial(self.bounds, entry.label)))
        self.close(tag, items, depth + 1)


def _flows(elements: Mapping[str, Element]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Flow node key -> keys of its incoming and outgoing sequence flows, in flow order.

    Flows without an id (anonymous entries) cannot be named, nor can such nodes be.
    """
    incoming: dict[str, list[tuple[str, str]]] = defaultdict(list)
    outgoing: dict[str, list[tuple[str, str]]] = defaultdict(list)
    named = {key for key, element in elements.items() if not element.anon}  # ids written
    for key, element in elements.items():
        if local_name(element.type) != "sequenceFlow" or element.anon:
            continue
        for name, table in (("sourceRef", outgoing), ("targetRef", incoming)):
            node = di_target(element.attrs.get(name, ""), named)
            if node is not None:
                table[node].append((element.order, key))
    return (
        {node: [key for _, key in sorted(flows)] for node, flows in incoming.items()},
        {node: [key for _, key in sorted(flows)] for node, flows in outgoing.items()},
    )


def _stick(ranks: list[int | None]) -> None:
    """Give vendor children (rank None) the rank of the next sibling that has one, else last.

    Parse makes every schema child after vendor XML an ordered one, so the next ordered
    sibling is the one the vendor XML stood before.
    """
    following = UNKNOWN_RANK
    for index in range(len(ranks) - 1, -1, -1):
        rank = ranks[index]
        if rank is None:
            ranks[index] = following
        else:
            following = rank


def _slot(slot: str) -> tuple[str, int]:
    tag, _, number = slot.rpartition("#")
    return tag, int(number)


def _attributes(attributes: Mapping[str, str], first: tuple[str, ...] = ()) -> str:
    names = [name for name in first if name in attributes]
    names.extend(sorted(name for name in attributes if name not in first))
    return "".join(f' {name}="{attributes[name].translate(_ATTRIBUTE)}"' for name in names)
