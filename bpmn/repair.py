"""Make any model renderable: what a client edited badly is fixed or left out, with a warning.

:func:`repair` is pure: it returns a fixed copy and never raises on content. What it returns,
render writes as XML that parse reads back to the same model (``docs/crdt-schema.md``, Rules,
lists every fix). In short:

- names and values XML cannot carry go (:mod:`bpmn.writable`); a well-known prefix a name
  uses undeclared is declared;
- entries parse would never make go (open containers, a flow node's ``incoming``), and so do
  shapes and edges of elements that do not exist, and anything that would write an id twice;
- entries of a missing or circular parent, or nested absurdly deep, are re-homed
  (:mod:`bpmn.hierarchy`); ``raw`` entries of a missing parent go;
- geometry of the wrong shape goes (lists or tuples, ints or floats are all fine: a trip
  through pycrdt may hand back either);
- entries without a valid ``order`` get one after their siblings.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import replace
from typing import Final, TypeVar

from bpmn.fragments import read_fragment
from bpmn.geometry import numbers, points
from bpmn.hierarchy import rehome
from bpmn.model import BpmnModel, DiEntry, Element, ModelWarning, RawEntry, RawSlot
from bpmn.order import is_key, key_between
from bpmn.qnames import is_xml_text, local_name
from bpmn.references import di_target
from bpmn.tree import BPMN_NS, BPMNDI_NS, DC_NS, DI_NS
from bpmn.writable import Writable
from bpmn.xsd_order import has_child

__all__ = ["REPAIRED", "repair"]

REPAIRED: Final = "render-repaired"

_DRAWN: Final = frozenset({"BPMNShape", "BPMNEdge"})
_DERIVED: Final = frozenset({"incoming", "outgoing"})
# Open containers hold the exporter's content: slots of their parent, never entries.
_OPEN: Final = frozenset({"documentation", "extensionElements", "script", "text"})
_E = TypeVar("_E", Element, DiEntry)


def repair(model: BpmnModel) -> BpmnModel:
    """A copy of ``model`` that :func:`bpmn.render.render` can always write (see module doc)."""
    return _Repair(model).run()


class _Repair:
    def __init__(self, model: BpmnModel) -> None:
        self.model = model
        self.warnings: list[ModelWarning] = list(model.warnings)
        self.xml = Writable(self.warn)

    def warn(self, message: str, key: str | None = None) -> None:
        self.warnings.append(ModelWarning(REPAIRED, message, None, key))

    def run(self) -> BpmnModel:
        model = self.model
        self.xml.namespaces(model.namespaces)
        tag = model.tag if isinstance(model.tag, str) else ""
        valid = self.xml.name(tag, element=True) and self.xml.uri(tag) == BPMN_NS
        if not valid or local_name(tag) != "definitions":
            self.warn(f"the root tag {tag!r} is not BPMN definitions; wrote bpmn definitions")
            tag = f"{self.xml.prefix(BPMN_NS, 'bpmn')}:definitions".lstrip(":")
        definitions = self.xml.strings(model.definitions, "definitions", None, reserved=())
        elements = self.entries(model.elements, Element, self.element)
        self.not_entries(elements)
        drawn = self.entries(model.di, DiEntry, self.di)
        named = {key for key, element in elements.items() if not element.anon}  # ids written
        di = {key: entry for key, entry in drawn.items() if not self.dangling(key, entry, named)}
        written = self.unique_ids(definitions, elements, di)
        rehome(elements, _home(elements, _element_home), "element", self.warn)
        rehome(di, _home(di, _di_home), "DI entry", self.warn)
        raw = self.raws(model.raw, elements, di)
        self.fragment_ids(elements, raw, written)
        for entries in (elements, di, raw):
            self.orders(entries)
        self.geometry_prefixes(di)
        return BpmnModel(tag, definitions, self.xml.pairs, elements, di, raw, self.warnings)

    # --- entries ----------------------------------------------------------------------------

    def entries(
        self, value: object, kind: type[_E], fix: Callable[[str, _E], _E | None]
    ) -> dict[str, _E]:
        result: dict[str, _E] = {}
        for key, entry in value.items() if isinstance(value, Mapping) else ():
            if not (isinstance(key, str) and key and is_xml_text(key) and isinstance(entry, kind)):
                self.warn(f"dropped the {kind.__name__} entry {key!r}: malformed")
                continue
            written = self.xml.entry_type(entry.type, BPMN_NS if kind is Element else BPMNDI_NS)
            if written is None:
                self.warn(f"dropped {key!r}: its type {entry.type!r} cannot be written", key)
                continue
            if written != entry.type:
                self.warn(f"{key!r}: wrote the type {entry.type!r} as {written!r}", key)
                entry = replace(entry, type=written)
            fixed = fix(key, entry)
            if fixed is not None:
                result[key] = fixed
        return result

    def element(self, key: str, entry: Element) -> Element:
        what = entry.type
        ext = entry.ext
        if ext is not None and not self.xml.holds(ext, (BPMN_NS, "extensionElements")):
            self.warn(f"{what} {key!r}: dropped ext, not one well-formed extensionElements", key)
            ext = None
        # Render writes a flow node's incoming and outgoing from the flows; not twice.
        derived = _DERIVED if has_child(local_name(entry.type), "incoming") else frozenset()
        return Element(
            type=entry.type,
            parent=entry.parent if isinstance(entry.parent, str) else "",
            order=entry.order if isinstance(entry.order, str) else "",
            attrs=self.xml.strings(entry.attrs, what, key, reserved=("id",)),
            text=self.xml.slots(entry.text, what, key, derived, lambda _text, _tag: True),
            body=self.xml.slots(entry.body, what, key, derived, self.xml.holds),
            ext=ext,
            anon=entry.anon is True,
        )

    def di(self, key: str, entry: DiEntry) -> DiEntry:
        what = entry.type
        fixed = DiEntry(
            type=entry.type,
            parent=entry.parent if isinstance(entry.parent, str) else "",
            order=entry.order if isinstance(entry.order, str) else "",
            element=entry.element if isinstance(entry.element, str) else None,
            attrs=self.xml.strings(entry.attrs, what, key, reserved=("id", "bpmnElement")),
            bounds=self.numbers(entry.bounds, (4,), what, key, "bounds"),
            label=self.numbers(entry.label, (0, 4), what, key, "label"),
            label_attrs=self.xml.strings(entry.label_attrs, what, key, reserved=()),
            font=None,
            anon=entry.anon is True,
        )
        if fixed.element is not None:
            fixed.element = self.xml.clean(fixed.element, what, key)
        if entry.font is not None:
            fixed.font = self.xml.strings(entry.font, what, key, reserved=())
        if entry.waypoints is not None:
            found = points(entry.waypoints)
            if found is None or found[1]:
                self.warn(f"{what} {key!r}: dropped waypoints that are not [x, y] numbers", key)
            fixed.waypoints = found[0] if found is not None else None
        return fixed

    def numbers(
        self, value: object, sizes: tuple[int, ...], what: str, key: str, field: str
    ) -> list[float] | None:
        if value is None:
            return None
        for size in sizes:
            found = numbers(value, size)
            if found is not None:
                return found
        self.warn(f"{what} {key!r}: dropped {field}, not {' or '.join(map(str, sizes))} numbers")
        return None

    def unique_ids(
        self, definitions: dict[str, str], elements: dict[str, Element], di: dict[str, DiEntry]
    ) -> set[str]:
        """Every id written once: elements and DI share the XML's one id space. Returns it."""
        written = {key for key, element in elements.items() if not element.anon}
        if definitions.get("id") in written:
            self.warn(f"dropped the definitions id {definitions.pop('id')!r}, an element's id")
        if "id" in definitions:
            written.add(definitions["id"])
        for key in [key for key, entry in di.items() if not entry.anon and key in written]:
            self.warn(f"dropped {di.pop(key).type} {key!r}: an element has that id", key)
        written.update(key for key, entry in di.items() if not entry.anon)
        for key, entry in di.items():
            label_id = entry.label_attrs.get("id")
            if label_id is not None and label_id in written:
                self.warn(f"{entry.type} {key!r}: dropped the label id {label_id!r}, in use", key)
                del entry.label_attrs["id"]
            elif label_id is not None:
                written.add(label_id)
        return written

    def fragment_ids(
        self, elements: dict[str, Element], raw: dict[str, RawEntry], written: set[str]
    ) -> None:
        """Drop fragments whose BPMN ids are already used: parse would refuse the XML."""

        def fresh(xml: str) -> bool:
            fragment = read_fragment(xml)
            ids = fragment.ids if fragment is not None else ()
            if written.intersection(ids) or len(set(ids)) < len(ids):
                return False
            written.update(ids)
            return True

        for key in sorted(elements):
            element = elements[key]
            for slot in sorted(element.body):
                if not fresh(element.body[slot]):
                    self.warn(f"{key!r}: dropped the slot {slot!r}, its ids are in use", key)
                    del element.body[slot]
            if element.ext is not None and not fresh(element.ext):
                self.warn(f"{key!r}: dropped ext, its ids are in use", key)
                element.ext = None
        for key in sorted(raw):
            if not fresh(raw[key].xml):
                self.warn(f"dropped raw {key!r}: its ids are in use", key)
                del raw[key]

    def not_entries(self, elements: dict[str, Element]) -> None:
        """Drop what parse never makes an entry, so that render and parse agree."""
        for key in [key for key, entry in elements.items() if _is_derived(entry, elements)]:
            self.warn(f"dropped {key!r}: render writes incoming and outgoing from the flows", key)
            del elements[key]
        for key in [key for key, entry in elements.items() if local_name(entry.type) in _OPEN]:
            self.warn(f"dropped {key!r}: a {local_name(elements[key].type)} is never an entry", key)
            del elements[key]

    def dangling(self, key: str, entry: DiEntry, named: Container[str]) -> bool:
        if local_name(entry.type) not in _DRAWN or entry.element is None:
            return False
        if di_target(entry.element, named) is not None:
            return False
        self.warn(f"dropped {entry.type} {key!r}: its element {entry.element!r} does not exist")
        return True

    def raws(
        self, value: object, elements: Mapping[str, Element], di: Mapping[str, DiEntry]
    ) -> dict[str, RawEntry]:
        parents: dict[str, Mapping[str, object]] = {"elements": elements, "di": di, "": {"": 0}}
        result: dict[str, RawEntry] = {}
        for key, entry in value.items() if isinstance(value, Mapping) else ():
            ok = (
                isinstance(key, str)
                and isinstance(entry, RawEntry)
                and entry.slot in parents
                and isinstance(entry.parent, str)
                and entry.parent in parents[entry.slot]
                and isinstance(entry.xml, str)
                and read_fragment(entry.xml) is not None
            )
            if not ok:
                self.warn(f"dropped raw {key!r}: no parent, or not one well-formed element")
                continue
            slot: RawSlot = entry.slot
            order = entry.order if isinstance(entry.order, str) else ""
            result[key] = RawEntry(entry.parent, slot, order, entry.xml)
        return result

    def orders(self, entries: Mapping[str, Element | DiEntry | RawEntry]) -> None:
        """Give entries without a valid order key one after their siblings, in key order."""
        last: dict[str, str] = {}
        bad: list[tuple[str, str]] = []
        for key, entry in entries.items():
            if is_key(entry.order):
                last[entry.parent] = max(last.get(entry.parent, entry.order), entry.order)
            else:
                bad.append((entry.parent, key))
        for parent, key in sorted(bad):
            entries[key].order = last[parent] = key_between(last.get(parent), None)

    def geometry_prefixes(self, di: Mapping[str, DiEntry]) -> None:
        """Render writes Bounds, waypoints, labels and fonts with the table's prefixes."""
        if any(e.bounds is not None or e.label or e.font is not None for e in di.values()):
            self.xml.prefix(DC_NS, "dc")
        if any(e.waypoints for e in di.values()):
            self.xml.prefix(DI_NS, "di")
        if any(e.label is not None and self.xml.uri(e.type) != BPMNDI_NS for e in di.values()):
            self.xml.prefix(BPMNDI_NS, "bpmndi")


def _is_derived(entry: Element, elements: Mapping[str, Element]) -> bool:
    parent = elements.get(entry.parent)
    return (
        local_name(entry.type) in _DERIVED
        and parent is not None
        and has_child(local_name(parent.type), "incoming")
    )


def _element_home(local: str) -> str | None:
    """Where an element of a missing or circular parent goes: a flow element into the first
    process, anything else to the top."""
    return "process" if has_child("process", local) else None


def _di_home(local: str) -> str | None:
    if local in _DRAWN:
        return "BPMNPlane"
    return None if local == "BPMNDiagram" else "BPMNDiagram"


def _home(
    entries: Mapping[str, _E], kind_of: Callable[[str], str | None]
) -> Callable[[str, _E], str]:
    """A home picker: the first (by order) top-level-ish entry of the kind ``kind_of`` names."""
    firsts: dict[str, str] = {}
    for key, entry in sorted(entries.items(), key=lambda item: (item[1].order, item[0])):
        local = local_name(entry.type)
        # The first process is looked for at the top; planes and diagrams anywhere.
        if local == "process" and entry.parent in entries:
            continue
        firsts.setdefault(local, key)

    def home(key: str, entry: _E) -> str:
        kind = kind_of(local_name(entry.type))
        target = firsts.get(kind, "") if kind is not None else ""
        return "" if target == key else target

    return home
