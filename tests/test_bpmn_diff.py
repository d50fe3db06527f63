"""Folding a new model into a live Doc: right result, few bytes, other people's work kept."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from bpmn.diff import (
    Change,
    DeleteEntry,
    DeleteKey,
    DeleteNested,
    PutEntry,
    SetKey,
    SetNested,
    apply,
    diff,
    fold,
    fold_xml,
    sibling_groups,
)
from bpmn.document import load, read, root_maps
from bpmn.model import BpmnModel, DiEntry, Element, RawEntry
from bpmn.order import key_between, spread_keys
from tests.samples import reference_files
from tests.test_bpmn_document import (
    BOUNDS,
    FONTS,
    LABELS,
    NAMES,
    NUMBERS,
    OPTIONAL_XML,
    POINTS,
    SLOTS,
    TYPES,
    WORDS,
    entry,
    junk_documents,
    models,
    without_warnings,
)

EntryId = tuple[str, str]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Helpers --------------------------------------------------------------------------------------


def rekey(model: BpmnModel) -> BpmnModel:
    """Number every parent's children afresh, as parsing XML does."""
    for siblings in sibling_groups(model).values():
        for entry_id, key in zip(siblings, spread_keys(len(siblings)), strict=True):
            entry(model, entry_id).order = key
    return model


def assert_same_modulo_order(actual: BpmnModel, expected: BpmnModel) -> None:
    """Equal, comparing each parent's children by sequence rather than by key strings."""
    assert sibling_groups(actual) == sibling_groups(expected)
    assert without_orders(actual) == without_orders(expected)


def without_orders(model: BpmnModel) -> BpmnModel:
    blank = without_warnings(model)
    for entries in (blank.elements, blank.di, blank.raw):
        for value in entries.values():
            value.order = ""
    return blank


def update_of(doc: Doc[Any], action: Callable[[], object]) -> bytes:
    """The update bytes ``action`` wrote into ``doc``: everything since the state before."""
    state = doc.get_state()
    action()
    return doc.get_update(state)


def weight(changes: list[Change]) -> int:
    """A byte budget for writing ``changes``: about what Yjs spends, a header per item written
    (client, clock, parent, key) plus the value, with no room for anything else."""
    total = 16
    for change in changes:
        if isinstance(change, PutEntry):
            fields = asdict(change.entry)
            items = sum(1 + len(v) if isinstance(v, dict) else 1 for v in fields.values())
            payload: object = [change.key, fields]
        else:
            items = 1
            payload = [value for value in asdict(change).values() if value != change.root]
        total += 16 * items + len(json.dumps(payload, ensure_ascii=False).encode())
    return total


# Random edits, as a user's editor or a whole-XML save makes them ------------------------------


def place(model: BpmnModel, entry_id: EntryId, data: st.DataObject) -> None:
    """Put ``entry_id`` at a random place among its (new) parent's children."""
    target = entry(model, entry_id)
    target.order = "~"  # out of the way while we look at the others
    siblings = next(s for s in sibling_groups(model).values() if entry_id in s)
    siblings = [s for s in siblings if s != entry_id]
    index = data.draw(st.integers(0, len(siblings)))
    low = entry(model, siblings[index - 1]).order if index else None
    high = entry(model, siblings[index]).order if index < len(siblings) else None
    target.order = key_between(low, high)


def subtree(model: BpmnModel, key: str) -> set[str]:
    found = {key}
    grew = True
    while grew:
        more = {k for k, e in model.elements.items() if e.parent in found} - found
        found |= more
        grew = bool(more)
    return found


def fresh_key(entries: dict[str, Any], prefix: str) -> str:
    return next(f"{prefix}{n}" for n in range(len(entries) + 1) if f"{prefix}{n}" not in entries)


def add_element(model: BpmnModel, data: st.DataObject) -> None:
    key = fresh_key(model.elements, "New")
    parent = data.draw(st.sampled_from(["", *model.elements]))
    model.elements[key] = Element(data.draw(TYPES), parent, "", {"name": data.draw(WORDS)})
    place(model, ("elements", key), data)


def delete_element(model: BpmnModel, data: st.DataObject) -> None:
    if model.elements:
        gone = subtree(model, data.draw(st.sampled_from(sorted(model.elements))))
        for key in gone:
            del model.elements[key]
        for key in [k for k, r in model.raw.items() if r.slot == "elements" and r.parent in gone]:
            del model.raw[key]


def reparent(model: BpmnModel, data: st.DataObject) -> None:
    if model.elements:
        key = data.draw(st.sampled_from(sorted(model.elements)))
        choices = ["", *(k for k in model.elements if k not in subtree(model, key))]
        model.elements[key].parent = data.draw(st.sampled_from(choices))
        place(model, ("elements", key), data)


def reorder(model: BpmnModel, data: st.DataObject) -> None:
    ids = [(root, k) for root, m in (("elements", model.elements), ("di", model.di)) for k in m]
    ids += [("raw", k) for k in model.raw]
    if ids:
        place(model, data.draw(st.sampled_from(ids)), data)


def edit_element(model: BpmnModel, data: st.DataObject) -> None:
    if not model.elements:
        return
    element = model.elements[data.draw(st.sampled_from(sorted(model.elements)))]
    what = data.draw(st.sampled_from(["rename", "attr", "text", "body", "ext", "type", "anon"]))
    if what == "rename":
        element.attrs["name"] = data.draw(WORDS)
    elif what == "attr":
        name = data.draw(NAMES)
        if name in element.attrs and data.draw(st.booleans()):
            del element.attrs[name]
        else:
            element.attrs[name] = data.draw(WORDS)
    elif what in ("text", "body"):
        slots = getattr(element, what)
        slot = data.draw(SLOTS)
        if slot in slots:
            del slots[slot]
        else:
            slots[slot] = data.draw(WORDS)
    elif what == "ext":
        element.ext = data.draw(OPTIONAL_XML)
    elif what == "type":
        element.type = data.draw(TYPES)
    else:
        element.anon = not element.anon


def edit_di(model: BpmnModel, data: st.DataObject) -> None:
    if not model.di:
        key = fresh_key(model.di, "NewDi")
        model.di[key] = DiEntry("bpmndi:BPMNShape", "", "", bounds=data.draw(BOUNDS))
        place(model, ("di", key), data)
        return
    shape = model.di[data.draw(st.sampled_from(sorted(model.di)))]
    what = data.draw(st.sampled_from(["move", "resize", "waypoints", "label", "font", "misc"]))
    if what == "move" and shape.bounds is not None:
        shape.bounds = [data.draw(NUMBERS), data.draw(NUMBERS), *shape.bounds[2:]]
    elif what in ("move", "resize"):
        shape.bounds = data.draw(st.one_of(st.none(), BOUNDS))
    elif what == "waypoints":
        shape.waypoints = data.draw(st.one_of(st.none(), POINTS))
    elif what == "label":
        shape.label = data.draw(LABELS)
        shape.label_attrs = data.draw(st.dictionaries(st.sampled_from(["id", "x"]), WORDS))
    elif what == "font":
        shape.font = data.draw(FONTS)
    else:
        shape.element = data.draw(st.one_of(st.none(), WORDS))
        shape.attrs = data.draw(st.dictionaries(NAMES, WORDS, max_size=2))


def edit_raw(model: BpmnModel, data: st.DataObject) -> None:
    if model.raw and data.draw(st.booleans()):
        del model.raw[data.draw(st.sampled_from(sorted(model.raw)))]
        return
    parent = data.draw(st.sampled_from(["", *model.elements]))
    key = fresh_key(model.raw, f"{parent}/")
    model.raw[key] = RawEntry(parent, "elements" if parent else "", "", "<x:new/>")
    place(model, ("raw", key), data)


def edit_meta(model: BpmnModel, data: st.DataObject) -> None:
    what = data.draw(st.sampled_from(["definition", "tag", "namespaces"]))
    if what == "definition":
        model.definitions[data.draw(NAMES)] = data.draw(WORDS)
    elif what == "tag":
        model.tag = data.draw(st.sampled_from(["bpmn:definitions", "semantic:definitions"]))
    else:
        model.namespaces = [*model.namespaces, ("new", data.draw(WORDS))]


EDITS = [
    add_element,
    delete_element,
    reparent,
    reorder,
    edit_element,
    edit_di,
    edit_raw,
    edit_meta,
]


def edited(model: BpmnModel, data: st.DataObject, max_edits: int = 6) -> BpmnModel:
    new = copy.deepcopy(model)
    for _ in range(data.draw(st.integers(1, max_edits))):
        data.draw(st.sampled_from(EDITS))(new, data)
    # A save from XML numbers everything afresh; a studio client keeps the keys it had.
    return rekey(new) if data.draw(st.booleans()) else new


@functools.cache
def corpus_model(path: Path) -> BpmnModel:
    parse: Callable[[bytes], BpmnModel] = pytest.importorskip("bpmn.parse").parse
    return without_warnings(parse(path.read_bytes()))


# Properties -----------------------------------------------------------------------------------


@FAST
@given(models(), st.data())
def test_fold_turns_the_document_into_the_new_model(old: BpmnModel, data: st.DataObject) -> None:
    new = edited(old, data)
    doc = load(old)
    changes: list[Change] = []
    update = update_of(doc, lambda: changes.extend(fold(doc, new)))
    assert_same_modulo_order(read(doc), new)
    # Proportional to the edit, not to the diagram.
    assert len(update) <= weight(changes)
    # Folding the same model again finds nothing to do.
    assert fold(doc, rekey(copy.deepcopy(new))) == []


@pytest.mark.skipif(not reference_files(), reason="no corpus")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(reference_files() or [Path()]), st.data())
def test_fold_on_corpus_models(path: Path, data: st.DataObject) -> None:
    old = copy.deepcopy(corpus_model(path))
    new = edited(old, data)
    doc = load(old)
    fold(doc, new)
    assert_same_modulo_order(read(doc), new)


@FAST
@given(models())
def test_an_unchanged_fold_writes_nothing(model: BpmnModel) -> None:
    doc = load(model)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    state = doc.get_state()
    assert fold(doc, rekey(copy.deepcopy(model))) == []
    assert updates == [] and doc.get_state() == state
    assert doc.get_update(state) == b"\x00\x00"


@FAST
@given(models(), st.data())
def test_concurrent_edits_of_other_elements_survive_a_fold(
    old: BpmnModel, data: st.DataObject
) -> None:
    add_element(old, data)  # at least one element to edit
    mine = data.draw(st.sampled_from(sorted(old.elements)))
    # A peer edits element ``mine``; a save based on ``old`` changes anything else.
    peer_model = copy.deepcopy(old)
    peer_element = peer_model.elements[mine]
    peer_element.attrs["name"] = "edited by a peer"
    peer_element.text["bpmn:documentation#0"] = "peer notes"
    peer_element.ext = "<peer/>"
    saved = edited(old, data)
    saved.elements[mine] = replace(copy.deepcopy(old.elements[mine]), order="~")
    place(saved, ("elements", mine), data)
    expected = copy.deepcopy(saved)
    expected.elements[mine] = replace(peer_element, order=saved.elements[mine].order)

    doc_a = load(old)
    doc_b: Doc[Any] = Doc()
    doc_b.apply_update(doc_a.get_update())
    fold(doc_b, peer_model)
    peer_only = doc_b.get_update()
    fold(doc_a, saved)
    doc_a.apply_update(doc_b.get_update(doc_a.get_state()))
    doc_b.apply_update(doc_a.get_update(doc_b.get_state()))
    assert read(doc_a) == read(doc_b)
    assert_same_modulo_order(read(doc_a), expected)

    # The save arrives after the peer's edit: folded against its base, it keeps the edit.
    doc_c: Doc[Any] = Doc()
    doc_c.apply_update(peer_only)
    fold(doc_c, saved, base=old)
    assert_same_modulo_order(read(doc_c), expected)


def test_without_a_base_a_stale_save_undoes_later_work() -> None:
    """Why ``fold(..., base=...)`` exists: the document is compared with the save as it is."""
    old = BpmnModel("bpmn:definitions", {"id": "D"}, [])
    old.elements["T"] = Element("bpmn:task", "", "V", {"name": "before"})
    doc = load(old)
    edited_live = copy.deepcopy(old)
    edited_live.elements["T"].attrs["name"] = "live edit"
    fold(doc, edited_live)
    saved = copy.deepcopy(old)
    saved.elements["U"] = Element("bpmn:task", "", "k")
    fold(doc, saved)
    assert read(doc).elements["T"].attrs["name"] == "before"


@FAST
@given(junk_documents(), models(max_elements=4))
def test_fold_repairs_whatever_a_client_left(doc: Doc[Any], new: BpmnModel) -> None:
    fold(doc, new)
    assert_same_modulo_order(read(doc), new)
    assert fold(doc, new) == []


def test_fold_into_root_types_a_client_made_of_the_wrong_kind() -> None:
    peer: Doc[Any] = Doc()
    peer.get("elements", type=Array).append("junk")
    peer.get("meta", type=Text).insert(0, "junk")
    doc: Doc[Any] = Doc()
    doc.apply_update(peer.get_update())
    fold(doc, chain(3))
    assert_same_modulo_order(read(doc), chain(3))


# Order keys -------------------------------------------------------------------------------------


def chain(count: int) -> BpmnModel:
    """One process with ``count`` tasks, each with a shape: the common big diagram."""
    model = BpmnModel("bpmn:definitions", {"id": "Defs"}, [("bpmn", "urn:bpmn")])
    model.elements["P"] = Element("bpmn:process", "", "V", {"isExecutable": "false"})
    model.di["D"] = DiEntry("bpmndi:BPMNDiagram", "", "k")
    model.di["Plane"] = DiEntry("bpmndi:BPMNPlane", "D", "V", element="P")
    for index, key in enumerate(spread_keys(count)):
        model.elements[f"T{index}"] = Element(
            "bpmn:task", "P", key, {"name": f"Step {index}"}, {"bpmn:documentation#0": "Check."}
        )
        model.di[f"T{index}_di"] = DiEntry(
            "bpmndi:BPMNShape", "Plane", key, f"T{index}", bounds=[index * 150.0, 80, 100, 80]
        )
    return model


def order_changes(changes: list[Change]) -> list[Change]:
    return [c for c in changes if isinstance(c, SetKey) and c.name == "order"]


def test_inserting_one_sibling_among_fifty_writes_one_order_key() -> None:
    old = chain(50)
    new = copy.deepcopy(old)
    low, high = old.elements["T19"].order, old.elements["T20"].order
    new.elements["New"] = Element("bpmn:task", "P", key_between(low, high))
    doc = load(old)
    [put] = fold(doc, rekey(new))
    assert isinstance(put, PutEntry) and put.key == "New"
    assert low < put.entry.order < high
    assert_same_modulo_order(read(doc), new)


@pytest.mark.parametrize("index", [0, 25, 49])
def test_moving_one_sibling_writes_one_order_key(index: int) -> None:
    old = chain(50)
    new = copy.deepcopy(old)
    new.elements[f"T{index}"].order = "~" if index < 49 else "0"  # last, or first
    doc = load(old)
    changes = fold(doc, rekey(new))
    assert len(changes) == 1 and order_changes(changes) == changes
    assert_same_modulo_order(read(doc), new)


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(12)))
def test_a_reordering_rewrites_only_the_siblings_outside_the_longest_kept_run(
    permutation: list[int],
) -> None:
    old = chain(12)
    new = copy.deepcopy(old)
    for position, index in enumerate(permutation):
        new.elements[f"T{index}"].order = f"{position:02}"
    changes = fold(load(old), rekey(new))
    assert (
        len(order_changes(changes)) == len(changes) == 12 - longest_increasing_length(permutation)
    )


def longest_increasing_length(values: list[int]) -> int:
    best = [1] * len(values)
    for i in range(len(values)):
        for j in range(i):
            if values[j] < values[i]:
                best[i] = max(best[i], best[j] + 1)
    return max(best, default=0)


def test_siblings_with_equal_keys_from_concurrent_inserts_are_separated() -> None:
    old = chain(3)
    old.elements["T2"].order = old.elements["T1"].order  # two peers inserted at one spot
    new = rekey(copy.deepcopy(old))
    doc = load(old)
    changes = fold(doc, new)
    assert len(order_changes(changes)) == 1
    orders = [read(doc).elements[f"T{i}"].order for i in range(3)]
    assert orders == sorted(orders) and len(set(orders)) == 3


# Sizes --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big() -> BpmnModel:
    return chain(1000)


EDITS_OF_ONE = {
    "rename": lambda m: m.elements["T500"].attrs.__setitem__("name", "Renamed step"),
    "move": lambda m: setattr(m.di["T500_di"], "bounds", [10.0, 20.0, 100.0, 80.0]),
    "document": lambda m: m.elements["T500"].text.__setitem__("bpmn:documentation#0", "New."),
    "insert": lambda m: m.elements.__setitem__("New", Element("bpmn:task", "P", "0001")),
    "delete": lambda m: m.elements.pop("T500"),
    "reorder": lambda m: setattr(m.elements["T500"], "order", "0001"),
}


@pytest.mark.parametrize("name", EDITS_OF_ONE)
def test_one_edit_in_a_thousand_element_diagram_is_a_small_update(
    big: BpmnModel, name: str
) -> None:
    new = copy.deepcopy(big)
    EDITS_OF_ONE[name](new)
    doc = load(big)
    full = len(doc.get_update())
    update = update_of(doc, lambda: fold(doc, rekey(new)))
    assert len(update) < 300 and len(update) * 1000 < full


# The change vocabulary and apply ----------------------------------------------------------------


def test_diff_speaks_in_keys() -> None:
    old = chain(2)
    new = copy.deepcopy(old)
    new.definitions["exporter"] = "x"
    del new.elements["T0"].text["bpmn:documentation#0"]
    new.elements["T1"].ext = "<e/>"
    new.di["T0_di"].font = {}
    new.di["T1_di"].bounds = None
    del new.elements["P"]
    assert diff(old, new) == [
        SetNested("meta", None, "definitions", "exporter", "x"),
        DeleteEntry("elements", "P"),
        DeleteNested("elements", "T0", "text", "bpmn:documentation#0"),
        SetKey("elements", "T1", "ext", "<e/>"),
        SetKey("di", "T0_di", "font", {}),
        DeleteKey("di", "T1_di", "bounds"),
    ]


def test_apply_skips_changes_to_entries_that_are_gone_and_rewrites_nothing() -> None:
    doc = load(chain(2))
    changes: list[Change] = [
        SetKey("elements", "gone", "order", "V"),
        SetNested("di", "gone", "attrs", "x", "y"),
        DeleteEntry("raw", "gone"),
        SetKey("elements", "T0", "parent", "P"),  # already so
        SetNested("elements", "T0", "attrs", "name", "Step 0"),  # already so
        DeleteNested("elements", "T0", "body", "none"),
        DeleteKey("di", "T0_di", "font"),
    ]
    assert update_of(doc, lambda: apply(doc, changes)) == b"\x00\x00"


def test_apply_turns_a_plain_dict_a_client_wrote_into_a_map() -> None:
    doc = load(chain(1))
    task = root_maps(doc)[1]["T0"]
    task["attrs"] = {"name": "plain", "keep": "me", "junk": 1}
    apply(doc, [DeleteNested("elements", "T0", "attrs", "name")])
    assert isinstance(task["attrs"], Map) and task["attrs"].to_py() == {"keep": "me"}
    task["text"] = "junk"
    apply(doc, [SetNested("elements", "T0", "text", ".", "hello")])
    assert task["text"].to_py() == {".": "hello"}


def test_fold_is_one_transaction_and_marks_the_schema() -> None:
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    fold(doc, chain(3))
    assert len(updates) == 1
    assert root_maps(doc)[0]["schema"] == 1
    assert_same_modulo_order(read(doc), chain(3))


@pytest.mark.parametrize("path", reference_files()[:6], ids=lambda path: path.name)
def test_fold_xml_of_the_same_file_changes_nothing(path: Path) -> None:
    doc = load(corpus_model(path))
    assert fold_xml(doc, path.read_bytes()) == []
    other = reference_files()[-1]
    fold_xml(doc, other.read_bytes())
    assert_same_modulo_order(read(doc), corpus_model(other))
