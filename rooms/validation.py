"""Keeping a live document inside the BPMN schema, one transaction at a time.

Every update from an editor is size-capped (by the room), must apply cleanly (pycrdt raises
``ValueError``/``RuntimeError`` on garbage; the room closes the sender with 4400), and then must
leave the document structurally valid for ``docs/crdt-schema.md``.

Checking: rendering the whole document after each update would be exact but far too slow (about
a second for 10,000 elements), so :class:`StructureGuard` observes the root maps deeply while an
update is applied and checks only what that transaction touched: a whole entry when the
transaction set or replaced it, otherwise only the fields it changed (every entry was valid
before, and no rule spans two fields; a rename then reads one field, not a dozen).

The rules: an entry is a ``Map``; ``type`` a non-empty string and ``parent`` a string (``xml`` and
``parent`` for ``raw``); ``order``, ``ext``, ``element`` strings; ``anon`` a boolean;
``attrs``/``text``/``body``/``labelAttrs``/``font`` Maps of strings; ``bounds`` four finite
numbers, ``label`` null or zero or four, ``waypoints`` a list of ``[x, y]``; the ``meta`` fields as
the schema says. Keys the schema does not name are left alone (a newer studio may add some; ``read``
ignores them), and so is what only ``render``'s repair pass can judge across entries (a missing
parent, a cycle, a bad order key): render repairs those without failing.

Repairing: the update has been applied by the time it can be checked, and Yjs cannot take it
back; other clients must also see exactly the server's state. So a touched entry that breaks the
schema is corrected in place by a server-origin change, which the room merges with the client's
update and broadcasts like any other: a bad value is put back to its previous value when the
transaction replaced a good one (nothing is lost), removed when it is optional, and an entry
that lacks a required field, or is not a Map at all, is removed whole (``meta`` is never removed,
only its bad fields). The sender is then closed with 4400; the room keeps a good state.

Known limit: Yjs holds an update whose dependencies are missing until they arrive, so a bad
change can be integrated, and attributed, on another client's later update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from pycrdt import Doc, Map, get_state

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
    root_maps,
)
from rooms.protocol import MalformedMessage, Reader

_MISSING: Final[Any] = object()
_DELETE: Final[Any] = object()


# --- rules ------------------------------------------------------------------------------------


def _number(value: object) -> bool:
    # bool is an int in Python but never a coordinate.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(*sizes: int) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return isinstance(value, list) and len(value) in sizes and all(map(_number, value))

    return check


def _text(value: object) -> bool:
    return isinstance(value, str)


def _name(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _flag(value: object) -> bool:
    return isinstance(value, bool)


def _label(value: object) -> bool:
    return value is None or _numbers(0, 4)(value)


def _points(value: object) -> bool:
    return isinstance(value, list) and all(map(_numbers(2), value))


def _slot(value: object) -> bool:
    return value in ("elements", "di", "")


def _namespaces(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(map(_text, pair)) for pair in value
    )


@dataclass(frozen=True, slots=True)
class _Rule:
    check: Callable[[object], bool]
    required: bool = False
    strings: bool = False  # a Map whose items must be strings; ``check`` is not used


_STRINGS: Final = _Rule(_text, strings=True)
_SPECS: Final[dict[str, dict[str, _Rule]]] = {
    ELEMENTS: {
        TYPE: _Rule(_name, required=True),
        PARENT: _Rule(_text, required=True),
        ORDER: _Rule(_text),
        ATTRS: _STRINGS,
        TEXT: _STRINGS,
        BODY: _STRINGS,
        EXT: _Rule(_text),
        ANON: _Rule(_flag),
    },
    DI: {
        TYPE: _Rule(_name, required=True),
        PARENT: _Rule(_text, required=True),
        ORDER: _Rule(_text),
        ELEMENT: _Rule(_text),
        ATTRS: _STRINGS,
        BOUNDS: _Rule(_numbers(4)),
        WAYPOINTS: _Rule(_points),
        LABEL: _Rule(_label),
        LABEL_ATTRS: _STRINGS,
        FONT: _STRINGS,
        ANON: _Rule(_flag),
    },
    RAW: {
        PARENT: _Rule(_text, required=True),
        XML: _Rule(_text, required=True),
        SLOT: _Rule(_slot),
        ORDER: _Rule(_text),
    },
    META: {
        SCHEMA: _Rule(_number, required=True),
        TAG: _Rule(_name, required=True),
        DEFINITIONS: _STRINGS,
        NAMESPACES: _Rule(_namespaces, required=True),
    },
}


@dataclass(frozen=True, slots=True)
class Fix:
    """One corrective write: set ``root/path.../name`` to ``value``, or delete it."""

    root: str
    path: tuple[str, ...]
    name: str
    value: Any = _DELETE

    @property
    def deletes(self) -> bool:
        return self.value is _DELETE


def _restorable(value: object) -> bool:
    # Only plain values can be written back; a replaced shared type is gone with its content.
    return value is None or isinstance(value, str | bool | int | float | list)


class StructureGuard:
    """Watches one document's root maps and checks what a transaction touched."""

    def __init__(self, doc: Doc[Any]) -> None:
        self._doc = doc
        self._roots: dict[str, Map[Any]] = dict(
            zip((META, ELEMENTS, DI, RAW), root_maps(doc), strict=True)
        )
        self._recording = False
        # (root, entry key) -> the entry's fields the transaction changed, or None when it set
        # the entry itself (check all of it); in the order they were first touched.
        self._touched: dict[tuple[str, str], set[str] | None] = {}
        self._old: dict[tuple[str, tuple[str, ...], str], object] = {}
        # Subscribed on the integrated (Rust) types, so the callback gets yrs' own events and
        # reads only their path and keys: pycrdt's observe_deep wraps every event first,
        # reading its target and converting every value, a tenth of a busy worker's time.
        self._subscriptions = [
            root.integrated.observe_deep(partial(self._record, name))
            for name, root in self._roots.items()
        ]

    def close(self) -> None:
        """Stop observing the document."""
        for subscription in self._subscriptions:
            subscription.drop()
        self._subscriptions.clear()

    @contextmanager
    def watch(self) -> Iterator[None]:
        """Record what the transactions inside touch (and forget what was recorded before)."""
        self._touched.clear()
        self._old.clear()
        self._recording = True
        try:
            yield
        finally:
            self._recording = False

    def _record(self, root: str, events: list[Any]) -> None:
        if not self._recording:
            return
        for event in events:
            path = tuple(str(part) for part in event.path)
            keys = getattr(event, "keys", None)
            if not isinstance(keys, dict):
                # Not a map's event (a client put a Y.Array or Y.Text somewhere): what it
                # sits in is checked all the same.
                if path:
                    self._touch(root, path)
                continue
            for name, change in keys.items():
                self._touch(root, (*path, name))
                old = change.get("oldValue", _MISSING)
                # Shared types come raw here; they are not restorable either way.
                if old is not _MISSING and _restorable(old):
                    self._old.setdefault((root, path, name), old)

    def _touch(self, root: str, changed: tuple[str, ...]) -> None:
        """Note a change at ``changed`` (entry key, field, ...): that field of the entry, or
        the entry itself when the path ends at it."""
        where = (root, changed[0])
        field = changed[1] if len(changed) > 1 else None
        if field is None:
            self._touched[where] = None
            return
        fields = self._touched.get(where, _MISSING)
        if fields is _MISSING:
            self._touched[where] = {field}
        elif fields is not None:
            fields.add(field)

    # --- checking --------------------------------------------------------------------------

    def fixes(self) -> list[Fix]:
        """The corrections the last watched transactions need; empty when all is well."""
        fixes: list[Fix] = []
        with self._doc.transaction():
            for (root, key), fields in self._touched.items():
                if root == META:
                    fixes += self._check_field(META, (), key, self._roots[META], entry=False)
                else:
                    fixes += self._check_entry(root, key, fields)
        return fixes

    def _check_entry(self, root: str, key: str, fields: set[str] | None) -> list[Fix]:
        entry = self._roots[root].get(key, _MISSING)
        if entry is _MISSING:
            return []  # deleting an entry is always allowed
        if not isinstance(entry, Map):
            return [Fix(root, (), key)]
        spec = _SPECS[root]
        names = spec if fields is None else [name for name in spec if name in fields]
        fixes: list[Fix] = []
        for name in names:
            found = self._check_field(root, (key,), name, entry, entry=True)
            if any(fix.path == () for fix in found):
                return found  # the entry goes: nothing else to fix in it
            fixes += found
        return fixes

    def _check_field(
        self, root: str, path: tuple[str, ...], name: str, holder: Map[Any], *, entry: bool
    ) -> list[Fix]:
        rule = _SPECS[root].get(name)
        if rule is None:
            return []
        value = holder.get(name, _MISSING)
        if value is _MISSING and not rule.required:
            return []
        if rule.strings and isinstance(value, Map):
            return self._check_strings(root, (*path, name), value)
        if value is not _MISSING and not rule.strings and rule.check(value):
            return []
        old = self._old.get((root, path, name), _MISSING)
        if old is not _MISSING and not rule.strings and rule.check(old):
            return [Fix(root, path, name, old)]
        if rule.required and entry:
            return [Fix(root, (), path[0])]  # the entry cannot stand without it
        return [Fix(root, path, name)]  # ``meta`` itself is never removed, only its fields

    def _check_strings(self, root: str, path: tuple[str, ...], value: Map[Any]) -> list[Fix]:
        fixes = []
        for name, item in value.items():
            if isinstance(item, str):
                continue
            old = self._old.get((root, path, name), _MISSING)
            fixes.append(Fix(root, path, name, old if isinstance(old, str) else _DELETE))
        return fixes

    # --- repairing ------------------------------------------------------------------------------

    def repair(self, fixes: list[Fix]) -> None:
        """Apply ``fixes`` in one transaction (not recorded: the server's writes are valid)."""
        with self._doc.transaction():
            for fix in fixes:
                target: object = self._roots[fix.root]
                for part in fix.path:
                    target = target.get(part) if isinstance(target, Map) else None
                if not isinstance(target, Map):
                    continue
                if fix.deletes:
                    if fix.name in target:
                        del target[fix.name]
                else:
                    target[fix.name] = fix.value


# --- updates without a document ---------------------------------------------------------------


def state_vector(data: bytes) -> dict[int, int]:
    """A Yjs state vector (``varuint n``, then n pairs of client id and clock) as a dict."""
    reader = Reader(data)
    result = {}
    for _ in range(reader.varuint()):
        client = reader.varuint()
        result[client] = reader.varuint()
    if not reader.done:
        raise MalformedMessage("unexpected bytes after the state vector")
    return result


def adds_content(update: bytes, known: dict[int, int]) -> bool:
    """Whether ``update`` holds content that a document with state ``known`` lacks.

    Only inserted content is seen; deletions are not (telling them apart would need the
    document). Raises :class:`MalformedMessage` when the update does not decode.
    """
    try:
        news = state_vector(get_state(update))
    except ValueError:
        raise MalformedMessage("the update does not decode") from None
    return any(clock > known.get(client, 0) for client, clock in news.items())
