"""The BPMN model inside a pycrdt ``Doc``, exactly as ``docs/crdt-schema.md`` lays it out.

:func:`load` writes a :class:`~bpmn.model.BpmnModel` into a new document, :func:`read` takes it
back out. Writers are strict (they write the schema and nothing else); :func:`read` is lenient,
because any client may have written anything: it never raises on document content, it keeps what
it can and records a :class:`~bpmn.model.ModelWarning` for every value it drops or normalises.

The schema's key names live here, once, in :data:`KEYS`; the studio mirrors that table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeGuard, TypeVar

from pycrdt import Doc, Map

from bpmn.model import SCHEMA_VERSION, BpmnModel, DiEntry, Element, ModelWarning, RawEntry, RawSlot
from bpmn.order import is_key

__all__ = [
    "KEYS",
    "Entry",
    "entry_map",
    "load",
    "load_into",
    "read",
    "root_maps",
    "string_map",
]

# Root types.
META: Final = "meta"
ELEMENTS: Final = "elements"
DI: Final = "di"
RAW: Final = "raw"
# Keys of ``meta``.
SCHEMA: Final = "schema"
TAG: Final = "tag"
DEFINITIONS: Final = "definitions"
NAMESPACES: Final = "namespaces"
# Keys of entries (``elements``, ``di``, ``raw``).
TYPE: Final = "type"
PARENT: Final = "parent"
ORDER: Final = "order"
ATTRS: Final = "attrs"
TEXT: Final = "text"
BODY: Final = "body"
EXT: Final = "ext"
ANON: Final = "anon"
ELEMENT: Final = "element"
BOUNDS: Final = "bounds"
WAYPOINTS: Final = "waypoints"
LABEL: Final = "label"
LABEL_ATTRS: Final = "labelAttrs"
FONT: Final = "font"
SLOT: Final = "slot"
XML: Final = "xml"

#: Every name of the schema, by constant name: dump it as JSON for the studio.
KEYS: Final[Mapping[str, str]] = {
    "META": META,
    "ELEMENTS": ELEMENTS,
    "DI": DI,
    "RAW": RAW,
    "SCHEMA": SCHEMA,
    "TAG": TAG,
    "DEFINITIONS": DEFINITIONS,
    "NAMESPACES": NAMESPACES,
    "TYPE": TYPE,
    "PARENT": PARENT,
    "ORDER": ORDER,
    "ATTRS": ATTRS,
    "TEXT": TEXT,
    "BODY": BODY,
    "EXT": EXT,
    "ANON": ANON,
    "ELEMENT": ELEMENT,
    "BOUNDS": BOUNDS,
    "WAYPOINTS": WAYPOINTS,
    "LABEL": LABEL,
    "LABEL_ATTRS": LABEL_ATTRS,
    "FONT": FONT,
    "SLOT": SLOT,
    "XML": XML,
}

#: Warning codes of :func:`read`.
BAD_ENTRY: Final = "crdt-bad-entry"  # an entry that could not be read at all was skipped
BAD_VALUE: Final = "crdt-bad-value"  # one value was dropped or replaced by a default
BAD_META: Final = "crdt-bad-meta"  # ``meta`` is missing, incomplete or of another schema

Entry = Element | DiEntry | RawEntry
_RAW_SLOTS: Final[dict[str, RawSlot]] = {"elements": "elements", "di": "di", "": ""}
_E = TypeVar("_E", Element, DiEntry, RawEntry)


# Writing ------------------------------------------------------------------------------------


def load(model: BpmnModel) -> Doc[Any]:
    """A new document holding ``model``, written in one transaction."""
    doc: Doc[Any] = Doc()
    load_into(doc, model)
    return doc


def load_into(doc: Doc[Any], model: BpmnModel) -> None:
    """Write ``model`` into ``doc`` as it is, order keys included, in one transaction.

    Meant for an empty document: entries already there under other keys are left alone.
    To bring a live document to a new model, use :func:`bpmn.diff.fold`.
    """
    with doc.transaction():
        meta, elements, di, raw = root_maps(doc)
        meta[SCHEMA] = SCHEMA_VERSION
        meta[TAG] = model.tag
        meta[DEFINITIONS] = Map(dict(model.definitions))
        meta[NAMESPACES] = [[prefix, uri] for prefix, uri in model.namespaces]
        for target, entries in (
            (elements, model.elements),
            (di, model.di),
            (raw, model.raw),
        ):
            for key, entry in entries.items():
                target[key] = entry_map(entry)


def root_maps(doc: Doc[Any]) -> tuple[Map[Any], Map[Any], Map[Any], Map[Any]]:
    """The four root maps ``meta``, ``elements``, ``di``, ``raw`` (created if missing)."""
    return (
        doc.get(META, type=Map),
        doc.get(ELEMENTS, type=Map),
        doc.get(DI, type=Map),
        doc.get(RAW, type=Map),
    )


def entry_map(entry: Entry) -> Map[Any]:
    """A preliminary ``Map`` for one entry, ready to be set into its root map."""
    value: dict[str, Any]
    if isinstance(entry, RawEntry):
        value = {PARENT: entry.parent, SLOT: entry.slot, ORDER: entry.order, XML: entry.xml}
        return Map(value)
    value = {TYPE: entry.type, PARENT: entry.parent, ORDER: entry.order}
    # Nested maps are written even when empty, so that two clients adding the first attribute
    # at the same time both land in one map instead of racing to create it.
    value[ATTRS] = Map(dict(entry.attrs))
    if isinstance(entry, Element):
        value[TEXT] = Map(dict(entry.text))
        value[BODY] = Map(dict(entry.body))
        if entry.ext is not None:
            value[EXT] = entry.ext
    else:
        if entry.element is not None:
            value[ELEMENT] = entry.element
        if entry.bounds is not None:
            value[BOUNDS] = [float(v) for v in entry.bounds]
        if entry.waypoints is not None:
            value[WAYPOINTS] = [[float(v) for v in point] for point in entry.waypoints]
        if entry.label is not None:
            value[LABEL] = [float(v) for v in entry.label]
        if entry.label_attrs:
            value[LABEL_ATTRS] = Map(dict(entry.label_attrs))
        if entry.font is not None:
            value[FONT] = Map(dict(entry.font))
    if entry.anon:
        value[ANON] = True
    return Map(value)


# Reading ------------------------------------------------------------------------------------


def read(doc: Doc[Any]) -> BpmnModel:
    """The model held by ``doc``; never raises on what clients wrote into it."""
    with doc.transaction():
        return _Reader().model(doc)


def string_map(value: object) -> tuple[dict[str, str], bool]:
    """The string items of a ``Map`` (or of a plain dict a client wrote instead of one).

    Also says whether the value was exactly what the schema asks: a ``Map`` of strings.
    """
    items: Iterable[tuple[object, object]]
    if isinstance(value, Map):
        items = value.items()
        clean = True
    elif isinstance(value, dict):
        items = value.items()
        clean = False
    else:
        return {}, value is None
    result: dict[str, str] = {}
    for name, item in items:
        if isinstance(name, str) and isinstance(item, str):
            result[name] = item
        else:
            clean = False
    return result, clean


class _Reader:
    def __init__(self) -> None:
        self.warnings: list[ModelWarning] = []

    def model(self, doc: Doc[Any]) -> BpmnModel:
        meta, elements, di, raw = root_maps(doc)
        self.schema(meta)
        model = BpmnModel(
            tag=self.tag(meta),
            definitions=self.definitions(meta),
            namespaces=self.namespaces(meta),
            elements=self.entries(elements, ELEMENTS, self.element),
            di=self.entries(di, DI, self.di_entry),
            raw=self.entries(raw, RAW, self.raw_entry),
        )
        model.warnings = self.warnings
        return model

    def warn(self, code: str, message: str, key: str | None = None) -> None:
        self.warnings.append(ModelWarning(code=code, message=message, id=key))

    # meta

    def schema(self, meta: Map[Any]) -> None:
        # Read anyway: a newer schema is meant to stay readable by older servers.
        schema = meta.get(SCHEMA)
        if not _is_number(schema) or schema != SCHEMA_VERSION:
            self.warn(BAD_META, f"meta.{SCHEMA} is {_kind(schema)}, not {SCHEMA_VERSION}")

    def tag(self, meta: Map[Any]) -> str:
        tag = meta.get(TAG)
        if isinstance(tag, str) and tag:
            return tag
        self.warn(BAD_META, f"meta.{TAG} is {_kind(tag)}, not the root's tag")
        return ""

    def definitions(self, meta: Map[Any]) -> dict[str, str]:
        value = meta.get(DEFINITIONS)
        result, clean = string_map(value)
        if not clean or value is None:
            self.warn(BAD_META, f"meta.{DEFINITIONS} is {_kind(value)}; kept its string items")
        return result

    def namespaces(self, meta: Map[Any]) -> list[tuple[str, str]]:
        value = meta.get(NAMESPACES)
        if not isinstance(value, list):
            self.warn(BAD_META, f"meta.{NAMESPACES} is {_kind(value)}, not a list")
            return []
        result: list[tuple[str, str]] = []
        for pair in value:
            if (
                isinstance(pair, list)
                and len(pair) == 2
                and isinstance(pair[0], str)
                and isinstance(pair[1], str)
            ):
                result.append((pair[0], pair[1]))
            else:
                self.warn(BAD_META, f"dropped a namespace that is not [prefix, uri]: {_kind(pair)}")
        return result

    # entries

    def entries(
        self, root: Map[Any], name: str, build: Callable[[str, Map[Any]], _E | None]
    ) -> dict[str, _E]:
        result: dict[str, _E] = {}
        # Sorted: a Y.Map iterates in no stable order, and the model (and its warnings)
        # should not change from one read to the next.
        for key in sorted(root.keys()):
            value = root[key]
            if not isinstance(value, Map):
                self.warn(BAD_ENTRY, f"{name}[{_kind(key)}] is {_kind(value)}, not a Map", key)
                continue
            entry = build(key, value)
            if entry is not None:
                result[key] = entry
        return result

    def element(self, key: str, entry: Map[Any]) -> Element | None:
        type_ = self.type(ELEMENTS, key, entry)
        if type_ is None:
            return None
        return Element(
            type=type_,
            parent=self.parent(ELEMENTS, key, entry),
            order=self.order(ELEMENTS, key, entry),
            attrs=self.strings(ELEMENTS, key, entry, ATTRS),
            text=self.strings(ELEMENTS, key, entry, TEXT),
            body=self.strings(ELEMENTS, key, entry, BODY),
            ext=self.optional_string(ELEMENTS, key, entry, EXT),
            anon=self.anon(ELEMENTS, key, entry),
        )

    def di_entry(self, key: str, entry: Map[Any]) -> DiEntry | None:
        type_ = self.type(DI, key, entry)
        if type_ is None:
            return None
        font: dict[str, str] | None = None
        if entry.get(FONT) is not None:
            font = self.strings(DI, key, entry, FONT)
        return DiEntry(
            type=type_,
            parent=self.parent(DI, key, entry),
            order=self.order(DI, key, entry),
            element=self.optional_string(DI, key, entry, ELEMENT),
            attrs=self.strings(DI, key, entry, ATTRS),
            bounds=self.geometry(key, entry, BOUNDS, sizes=(4,)),
            waypoints=self.points(key, entry),
            label=self.geometry(key, entry, LABEL, sizes=(0, 4)),
            label_attrs=self.strings(DI, key, entry, LABEL_ATTRS),
            font=font,
            anon=self.anon(DI, key, entry),
        )

    def raw_entry(self, key: str, entry: Map[Any]) -> RawEntry | None:
        xml = entry.get(XML)
        if not isinstance(xml, str):
            self.warn(BAD_ENTRY, f"{RAW}[{_kind(key)}].{XML} is {_kind(xml)}; entry skipped", key)
            return None
        parent = self.parent(RAW, key, entry)
        value = entry.get(SLOT)
        slot = _RAW_SLOTS.get(value) if isinstance(value, str) else None
        if slot is None:
            # The parent's map is a better guess than nothing; render repairs the rest.
            slot = "" if parent == "" else "elements"
            self.warn(BAD_VALUE, f"{RAW}[{_kind(key)}].{SLOT} is not a slot; using {slot!r}", key)
        return RawEntry(parent=parent, slot=slot, order=self.order(RAW, key, entry), xml=xml)

    # fields

    def type(self, root: str, key: str, entry: Map[Any]) -> str | None:
        value = entry.get(TYPE)
        if isinstance(value, str) and value:
            return value
        self.warn(BAD_ENTRY, f"{root}[{_kind(key)}].{TYPE} is {_kind(value)}; entry skipped", key)
        return None

    def parent(self, root: str, key: str, entry: Map[Any]) -> str:
        value = entry.get(PARENT)
        if isinstance(value, str):
            return value
        self.warn(
            BAD_VALUE, f"{root}[{_kind(key)}].{PARENT} is {_kind(value)}; using the root", key
        )
        return ""

    def order(self, root: str, key: str, entry: Map[Any]) -> str:
        value = entry.get(ORDER)
        if isinstance(value, str) and is_key(value):
            return value
        # Kept when it is a string: the diff gives a malformed key a fresh one on the next fold.
        self.warn(
            BAD_VALUE, f"{root}[{_kind(key)}].{ORDER} is not an order key: {_kind(value)}", key
        )
        return value if isinstance(value, str) else ""

    def strings(self, root: str, key: str, entry: Map[Any], name: str) -> dict[str, str]:
        value = entry.get(name)
        result, clean = string_map(value)
        if not clean:
            self.warn(
                BAD_VALUE,
                f"{root}[{_kind(key)}].{name} is {_kind(value)}; kept its string items",
                key,
            )
        return result

    def optional_string(self, root: str, key: str, entry: Map[Any], name: str) -> str | None:
        value = entry.get(name)
        if value is None or isinstance(value, str):
            return value
        self.warn(BAD_VALUE, f"{root}[{_kind(key)}].{name} is {_kind(value)}; dropped", key)
        return None

    def anon(self, root: str, key: str, entry: Map[Any]) -> bool:
        value = entry.get(ANON)
        if value is None or isinstance(value, bool):
            return value is True
        self.warn(BAD_VALUE, f"{root}[{_kind(key)}].{ANON} is {_kind(value)}; taken as false", key)
        return False

    def geometry(
        self, key: str, entry: Map[Any], name: str, sizes: tuple[int, ...]
    ) -> list[float] | None:
        value = entry.get(name)
        if value is None:
            return None
        numbers = _numbers(value)
        if numbers is not None and len(numbers) in sizes:
            return numbers
        self.warn(BAD_VALUE, f"{DI}[{_kind(key)}].{name} is not {sizes[-1]} numbers; dropped", key)
        return None

    def points(self, key: str, entry: Map[Any]) -> list[list[float]] | None:
        value = entry.get(WAYPOINTS)
        if value is None:
            return None
        if isinstance(value, list):
            points = [_numbers(point) for point in value]
            if all(point is not None and len(point) == 2 for point in points):
                return [point for point in points if point is not None]
        self.warn(
            BAD_VALUE, f"{DI}[{_kind(key)}].{WAYPOINTS} is not a list of [x, y]; dropped", key
        )
        return None


def _is_number(value: object) -> TypeGuard[int | float]:
    # bool is an int in Python but never a coordinate.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value: object) -> list[float] | None:
    """``value`` as a list of finite floats, or ``None`` when it is anything else."""
    if not isinstance(value, list):
        return None
    numbers: list[float] = []
    for item in value:
        if not _is_number(item) or not math.isfinite(item):
            return None
        numbers.append(float(item))
    return numbers


def _kind(value: object) -> str:
    """A short description of a bad value for a warning, never its whole content."""
    if value is None:
        return "missing"
    if isinstance(value, str | int | float):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__}"
