"""The smallest set of CRDT writes that turns one model into another.

A REST save arrives as a whole new XML document, but the live room must see it as a few key
writes: an untouched element keeps its CRDT identity (clients holding it do not duplicate it) and
an editor's concurrent work on other keys survives. :func:`diff` compares two models key by key,
:func:`apply` writes the result into a ``Doc`` in one transaction, :func:`fold` does both.

Order keys need care: a parsed model numbers every parent's children afresh, so its keys only say
which sibling comes first. The diff keeps the old key of every sibling whose place relative to the
others is unchanged (the longest increasing run of old keys in the new order) and makes new keys,
between kept neighbours, only for added or moved siblings; inserting one task rewrites one key.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from pycrdt import Doc, Map

from bpmn.document import (
    ANON,
    ATTRS,
    BODY,
    BOUNDS,
    DEFINITIONS,
    DI,
    ELEMENT,
    ELEMENTS,
    EXT,
    FONT,
    LABEL,
    LABEL_ATTRS,
    META,
    NAMESPACES,
    ORDER,
    PARENT,
    RAW,
    SCHEMA,
    SLOT,
    TAG,
    TEXT,
    TYPE,
    WAYPOINTS,
    XML,
    Entry,
    entry_map,
    read,
    root_maps,
    string_map,
)
from bpmn.model import SCHEMA_VERSION, BpmnModel, DiEntry, Element, RawEntry
from bpmn.order import is_key, keys_between

__all__ = [
    "Change",
    "DeleteEntry",
    "DeleteKey",
    "DeleteNested",
    "PutEntry",
    "SetKey",
    "SetNested",
    "apply",
    "diff",
    "fold",
    "fold_xml",
    "sibling_groups",
]

EntryRoot: TypeAlias = Literal["elements", "di", "raw"]
Root: TypeAlias = Literal["meta", "elements", "di", "raw"]
#: A value a schema key holds: a string, a flag, a number, a geometry or namespace list, or (for
#: a nested map written whole, such as a new ``font``) a dict of strings.
Value: TypeAlias = str | bool | int | float | list[Any] | dict[str, str]


@dataclass(frozen=True, slots=True)
class PutEntry:
    """Write a whole entry (new, or replacing one that could not be read)."""

    root: EntryRoot
    key: str
    entry: Entry


@dataclass(frozen=True, slots=True)
class DeleteEntry:
    root: EntryRoot
    key: str


@dataclass(frozen=True, slots=True)
class SetKey:
    """Set one key of an entry; ``root="meta"`` with ``key=None`` addresses ``meta`` itself."""

    root: Root
    key: str | None
    name: str
    value: Value


@dataclass(frozen=True, slots=True)
class DeleteKey:
    root: Root
    key: str | None
    name: str


@dataclass(frozen=True, slots=True)
class SetNested:
    """Set one item of a nested map (``attrs``, ``text``, ``body``, ``labelAttrs``, ...)."""

    root: Root
    key: str | None
    field: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class DeleteNested:
    root: Root
    key: str | None
    field: str
    name: str


Change: TypeAlias = PutEntry | DeleteEntry | SetKey | DeleteKey | SetNested | DeleteNested

#: Siblings share one order space per parent: ``(space, parent key)``; all children of
#: ``definitions`` (elements, diagrams, raw XML) form the single group ``("", "")``.
GroupId: TypeAlias = tuple[str, str]
EntryId: TypeAlias = tuple[EntryRoot, str]

_ROOT_GROUP: Final[GroupId] = ("", "")
# How each field is compared: "value" (absent when None), "flag" (absent when false),
# "map" (a nested map, diffed item by item), "optional map" (absent when None).
_FIELDS: Final[dict[type, tuple[tuple[str, str, str], ...]]] = {
    Element: (
        ("type", TYPE, "value"),
        ("parent", PARENT, "value"),
        ("attrs", ATTRS, "map"),
        ("text", TEXT, "map"),
        ("body", BODY, "map"),
        ("ext", EXT, "value"),
        ("anon", ANON, "flag"),
    ),
    DiEntry: (
        ("type", TYPE, "value"),
        ("parent", PARENT, "value"),
        ("element", ELEMENT, "value"),
        ("attrs", ATTRS, "map"),
        ("bounds", BOUNDS, "value"),
        ("waypoints", WAYPOINTS, "value"),
        ("label", LABEL, "value"),
        ("label_attrs", LABEL_ATTRS, "map"),
        ("font", FONT, "optional map"),
        ("anon", ANON, "flag"),
    ),
    RawEntry: (
        ("parent", PARENT, "value"),
        ("slot", SLOT, "value"),
        ("xml", XML, "value"),
    ),
}


# Diff ---------------------------------------------------------------------------------------


def diff(old: BpmnModel, new: BpmnModel) -> list[Change]:
    """The changes that turn ``old`` into ``new``, order keys reconciled (see the module doc)."""
    changes: list[Change] = []
    if new.tag != old.tag:
        changes.append(SetKey(META, None, TAG, new.tag))
    if [tuple(pair) for pair in new.namespaces] != [tuple(pair) for pair in old.namespaces]:
        changes.append(SetKey(META, None, NAMESPACES, [[p, uri] for p, uri in new.namespaces]))
    changes.extend(_diff_map(META, None, DEFINITIONS, old.definitions, new.definitions))
    orders = _reconcile_orders(old, new)
    for root, before, after in _roots(old, new):
        changes.extend(DeleteEntry(root, key) for key in before if key not in after)
        for key, entry in after.items():
            order = orders[root, key]
            previous = before.get(key)
            if previous is None:
                changes.append(PutEntry(root, key, dataclasses.replace(entry, order=order)))
                continue
            changes.extend(_diff_entry(root, key, previous, entry))
            if previous.order != order:
                changes.append(SetKey(root, key, ORDER, order))
    return changes


def _roots(
    old: BpmnModel, new: BpmnModel
) -> Iterator[tuple[EntryRoot, Mapping[str, Entry], Mapping[str, Entry]]]:
    yield "elements", old.elements, new.elements
    yield "di", old.di, new.di
    yield "raw", old.raw, new.raw


def _diff_entry(root: EntryRoot, key: str, old: Entry, new: Entry) -> Iterator[Change]:
    for attribute, name, kind in _FIELDS[type(new)]:
        before = getattr(old, attribute)
        after = getattr(new, attribute)
        if before == after:
            continue
        if kind == "map" or (kind == "optional map" and before is not None and after is not None):
            yield from _diff_map(root, key, name, before or {}, after or {})
        elif after is None or after is False:
            yield DeleteKey(root, key, name)
        else:
            # A fresh copy: the change must not alias the caller's model.
            yield SetKey(root, key, name, _copy(after))


def _diff_map(
    root: Root, key: str | None, field: str, old: Mapping[str, str], new: Mapping[str, str]
) -> Iterator[Change]:
    for name in old:
        if name not in new:
            yield DeleteNested(root, key, field, name)
    for name, value in new.items():
        if old.get(name) != value:
            yield SetNested(root, key, field, name, value)


def _copy(value: Value) -> Value:
    if isinstance(value, list):
        return [list(item) if isinstance(item, list) else item for item in value]
    if isinstance(value, dict):
        return dict(value)
    return value


# Order keys ---------------------------------------------------------------------------------


def sibling_groups(model: BpmnModel) -> dict[GroupId, list[EntryId]]:
    """Every parent's ordered children, in order (ties broken by map, then key)."""
    ranked: dict[GroupId, list[tuple[str, int, EntryId]]] = {}
    roots: tuple[tuple[EntryRoot, Mapping[str, Entry]], ...] = (
        ("elements", model.elements),
        ("raw", model.raw),
        ("di", model.di),
    )
    for rank, (root, entries) in enumerate(roots):
        for key, entry in entries.items():
            ranked.setdefault(_group(root, entry), []).append((entry.order, rank, (root, key)))
    return {
        group: [entry_id for _, _, entry_id in sorted(siblings)]
        for group, siblings in ranked.items()
    }


def _group(root: EntryRoot, entry: Entry) -> GroupId:
    if entry.parent == "":
        return _ROOT_GROUP
    if isinstance(entry, RawEntry):
        return (DI if entry.slot == "di" else ELEMENTS), entry.parent
    return root, entry.parent


def _reconcile_orders(old: BpmnModel, new: BpmnModel) -> dict[EntryId, str]:
    """The order key each entry of ``new`` gets: its old one where possible."""
    old_entries: dict[EntryRoot, Mapping[str, Entry]] = {
        "elements": old.elements,
        "di": old.di,
        "raw": old.raw,
    }
    orders: dict[EntryId, str] = {}
    for group, siblings in sibling_groups(new).items():
        old_keys: list[str | None] = []
        for root, key in siblings:
            previous = old_entries[root].get(key)
            # A moved-in sibling's old key belongs to another parent's order space, and a
            # malformed key (a client's) cannot have keys made next to it.
            if previous is not None and _group(root, previous) == group and is_key(previous.order):
                old_keys.append(previous.order)
            else:
                old_keys.append(None)
        kept = _longest_increasing(old_keys)
        run: list[EntryId] = []
        low: str | None = None
        for index, entry_id in enumerate(siblings):
            high = kept.get(index)
            if high is None:
                run.append(entry_id)
                continue
            orders.update(zip(run, keys_between(low, high, len(run)), strict=True))
            orders[entry_id] = low = high
            run = []
        orders.update(zip(run, keys_between(low, None, len(run)), strict=True))
    return orders


def _longest_increasing(values: Sequence[str | None]) -> dict[int, str]:
    """A longest strictly increasing subsequence of the non-``None`` values, by index."""
    tails: list[int] = []  # tails[n]: index that ends the best run of length n + 1 so far
    tail_values: list[str] = []
    previous: dict[int, int | None] = {}
    for index, value in enumerate(values):
        if value is None:
            continue
        length = bisect_left(tail_values, value)
        previous[index] = tails[length - 1] if length else None
        if length == len(tails):
            tails.append(index)
            tail_values.append(value)
        else:
            tails[length] = index
            tail_values[length] = value
    result: dict[int, str] = {}
    cursor = tails[-1] if tails else None
    while cursor is not None:
        value = values[cursor]
        if value is not None:  # always: only non-None values enter a run
            result[cursor] = value
        cursor = previous[cursor]
    return result


# Writing ------------------------------------------------------------------------------------


def apply(doc: Doc[Any], changes: Sequence[Change]) -> None:
    """Write ``changes`` into ``doc`` in one transaction, touching nothing else.

    A write whose value is already there is skipped, so re-applying produces no update. A change
    to an entry that is gone (a peer deleted it) is dropped, as a concurrent CRDT delete would.
    To tag the update with an origin, call this inside ``with doc.transaction(origin=...)``.
    """
    if not changes:
        return
    with doc.transaction():
        meta, elements, di, raw = root_maps(doc)
        roots: dict[str, Map[Any]] = {ELEMENTS: elements, DI: di, RAW: raw}
        for change in changes:
            if isinstance(change, PutEntry):
                roots[change.root][change.key] = entry_map(change.entry)
                continue
            if isinstance(change, DeleteEntry):
                if change.key in roots[change.root]:
                    del roots[change.root][change.key]
                continue
            target = meta if change.key is None else roots[change.root].get(change.key)
            if not isinstance(target, Map):
                continue
            if isinstance(change, SetKey):
                _set(target, change.name, change.value)
            elif isinstance(change, DeleteKey):
                if change.name in target:
                    del target[change.name]
            elif isinstance(change, SetNested):
                _set(_nested_map(target, change.field), change.name, change.value)
            else:
                _delete_nested(target, change.field, change.name)


def _set(target: Map[Any], name: str, value: Value) -> None:
    if isinstance(value, dict):
        target[name] = Map(dict(value))
        return
    current = target.get(name)
    # Compared with the type: True == 1.0 in Python, but a flag is not a number.
    if type(current) is not type(value) or current != value:
        target[name] = value


def _nested_map(entry: Map[Any], field: str) -> Map[Any]:
    """``entry[field]`` as a real ``Map``: created if missing, and if a client left something
    else there, replaced by a Map of the string items :func:`~bpmn.document.read` kept of it."""
    current = entry.get(field)
    if isinstance(current, Map):
        return current
    items, _ = string_map(current)
    nested: Map[Any] = Map(items)
    entry[field] = nested
    return nested


def _delete_nested(entry: Map[Any], field: str, name: str) -> None:
    current = entry.get(field)
    if isinstance(current, Map):
        if name in current:
            del current[name]
    elif isinstance(current, dict) and name in current:
        _nested_map(entry, field)
        del entry[field][name]


def fold(doc: Doc[Any], new: BpmnModel, *, base: BpmnModel | None = None) -> list[Change]:
    """Bring ``doc`` to ``new`` with the fewest writes; returns the changes written.

    Without ``base`` the document is compared with ``new`` as it is now: right when ``new`` was
    made from the document's current content. When ``new`` was edited from an older state (a
    REST save based on a stored version while editors kept working), pass that state's model
    (``read`` of the version's CRDT state, not a parse of its XML, whose order keys are fresh):
    only what differs between ``base`` and ``new`` is written, so the editors' later work on
    other keys survives.
    """
    with doc.transaction():
        changes = diff(read(doc) if base is None else base, new)
        meta = root_maps(doc)[0]
        if meta.get(SCHEMA) != SCHEMA_VERSION:
            changes.append(SetKey(META, None, SCHEMA, SCHEMA_VERSION))
        apply(doc, changes)
    return changes


def fold_xml(doc: Doc[Any], xml: bytes, *, base: BpmnModel | None = None) -> list[Change]:
    """:func:`fold` the model of a BPMN XML document into ``doc``.

    Raises what :func:`bpmn.parse.parse` raises for a document it refuses.
    """
    # Imported here: the XML side is heavier (lxml) and the CRDT side works without it.
    from bpmn.parse import parse

    return fold(doc, parse(xml), base=base)
