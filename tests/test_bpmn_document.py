"""The model inside a pycrdt Doc: load and read round-trip, and read survives any client."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, XmlFragment

from bpmn.document import KEYS, entry_map, load, load_into, read, root_maps
from bpmn.model import BpmnModel, DiEntry, Element, ModelWarning, RawEntry
from bpmn.order import keys_between, spread_keys
from tests.samples import reference_files

# Strategies (also used by test_bpmn_diff) -------------------------------------------------

WORDS = st.text(alphabet="abcXYZ é:-_<>&\"'", max_size=8)
NAMES = st.sampled_from(["name", "isExecutable", "xsi:type", "camunda:asyncBefore", "sourceRef"])
SLOTS = st.sampled_from(["bpmn:documentation#0", "bpmn:documentation#1", "bpmn:text#0", "."])
BODIES = st.sampled_from(["bpmn:conditionExpression#0", "bpmn:timerEventDefinition#0"])
TYPES = st.sampled_from(["bpmn:task", "bpmn:userTask", "bpmn:process", "startEvent", "bpmn:lane"])
DI_TYPES = st.sampled_from(["bpmndi:BPMNShape", "bpmndi:BPMNEdge", "bpmndi:BPMNPlane"])
NUMBERS = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
BOUNDS = st.lists(NUMBERS, min_size=4, max_size=4)
POINTS = st.lists(st.lists(NUMBERS, min_size=2, max_size=2), min_size=2, max_size=4)
LABELS = st.one_of(st.none(), st.just([]), BOUNDS)
FONTS = st.one_of(st.none(), st.dictionaries(st.sampled_from(["name", "size", "isBold"]), WORDS))
OPTIONAL_XML = st.one_of(st.none(), st.sampled_from(["<bpmn:extensionElements/>", "<x:y/>"]))


def elements_(draw: st.DrawFn, parents: list[str]) -> Element:
    return Element(
        type=draw(TYPES),
        parent=draw(st.sampled_from(parents)),
        order="",
        attrs=draw(st.dictionaries(NAMES, WORDS, max_size=3)),
        text=draw(st.dictionaries(SLOTS, WORDS, max_size=2)),
        body=draw(st.dictionaries(BODIES, WORDS, max_size=1)),
        ext=draw(OPTIONAL_XML),
        anon=draw(st.booleans()),
    )


def di_entry(draw: st.DrawFn, parents: list[str], elements: list[str]) -> DiEntry:
    return DiEntry(
        type=draw(DI_TYPES),
        parent=draw(st.sampled_from(parents)),
        order="",
        element=draw(st.one_of(st.none(), st.sampled_from(elements))),
        attrs=draw(st.dictionaries(NAMES, WORDS, max_size=2)),
        bounds=draw(st.one_of(st.none(), BOUNDS)),
        waypoints=draw(st.one_of(st.none(), POINTS)),
        label=draw(LABELS),
        label_attrs=draw(st.dictionaries(st.sampled_from(["id", "labelStyle"]), WORDS, max_size=2)),
        font=draw(FONTS),
        anon=draw(st.booleans()),
    )


@st.composite
def models(draw: st.DrawFn, max_elements: int = 12) -> BpmnModel:
    """A random model: semantically loose (the CRDT side does not care), structurally valid
    (parents exist, no cycles), every parent's children with distinct, valid order keys."""
    model = BpmnModel(
        tag=draw(st.sampled_from(["bpmn:definitions", "definitions"])),
        definitions={"id": "Defs", **draw(st.dictionaries(NAMES, WORDS, max_size=2))},
        namespaces=draw(
            st.lists(
                st.tuples(st.sampled_from(["", "bpmn", "bpmndi", "dc"]), WORDS),
                max_size=4,
                unique_by=lambda pair: pair[0],
            )
        ),
    )
    for index in range(draw(st.integers(0, max_elements))):
        model.elements[f"E{index}"] = elements_(draw, ["", *model.elements])
    for index in range(draw(st.integers(0, max_elements))):
        model.di[f"D{index}"] = di_entry(draw, ["", *model.di], [*model.elements, "missing"])
    for index in range(draw(st.integers(0, 3))):
        model.raw[f"R{index}"] = raw_entry(draw, model)
    assign_orders(model, draw)
    return model


def raw_entry(draw: st.DrawFn, model: BpmnModel) -> RawEntry:
    slot = draw(st.sampled_from(["", "elements", "di"]))
    parents = {"": [""], "elements": list(model.elements), "di": list(model.di)}[slot]
    if not parents:
        slot, parents = "", [""]
    return RawEntry(
        parent=draw(st.sampled_from(parents)), slot=slot, order="", xml=draw(OPTIONAL_XML) or "<a/>"
    )


def assign_orders(model: BpmnModel, draw: st.DrawFn) -> None:
    """Shuffle every parent's children and number them, evenly (as parse does) or as a long
    editing history leaves them (bisected keys of mixed lengths)."""
    from bpmn.diff import sibling_groups

    for siblings in sibling_groups(model).values():
        order = draw(st.permutations(siblings))
        keys = draw(st.sampled_from([spread_keys, lambda n: keys_between("1", "2", n)]))(len(order))
        for entry_id, key in zip(order, keys, strict=True):
            entry(model, entry_id).order = key


def entry(model: BpmnModel, entry_id: tuple[str, str]) -> Element | DiEntry | RawEntry:
    root, key = entry_id
    entries: dict[str, Any] = {"elements": model.elements, "di": model.di, "raw": model.raw}[root]
    found: Element | DiEntry | RawEntry = entries[key]
    return found


def without_warnings(model: BpmnModel) -> BpmnModel:
    clean = copy.deepcopy(model)
    clean.warnings = []
    return clean


def full_model() -> BpmnModel:
    """Every field of the schema in use, by hand."""
    return BpmnModel(
        tag="bpmn:definitions",
        definitions={"id": "Defs_1", "targetNamespace": "http://bpmn.io/schema/bpmn"},
        namespaces=[("bpmn", "http://www.omg.org/spec/BPMN/20100524/MODEL"), ("", "urn:x")],
        elements={
            "Process_1": Element("bpmn:process", "", "V", {"isExecutable": "false"}),
            "~Process_1/laneSet#0": Element("bpmn:laneSet", "Process_1", "F", anon=True),
            "Lane_1": Element(
                "bpmn:lane", "~Process_1/laneSet#0", "V", text={"bpmn:flowNodeRef#0": "Task_1"}
            ),
            "Task_1": Element(
                "bpmn:task",
                "Process_1",
                "k",
                {"name": 'Check <order> & "ship"', "camunda:asyncBefore": "true"},
                text={"bpmn:documentation#0": "Check it."},
                body={"bpmn:multiInstanceLoopCharacteristics#0": "<bpmn:mi/>"},
                ext="<bpmn:extensionElements><camunda:x/></bpmn:extensionElements>",
            ),
        },
        di={
            "Diagram_1": DiEntry("bpmndi:BPMNDiagram", "", "k"),
            "Plane_1": DiEntry("bpmndi:BPMNPlane", "Diagram_1", "V", element="Process_1"),
            "Task_1_di": DiEntry(
                "bpmndi:BPMNShape",
                "Plane_1",
                "F",
                element="Task_1",
                attrs={"bioc:stroke": "#000"},
                bounds=[150.0, 80.5, 100.0, 80.0],
                label=[],
                label_attrs={"labelStyle": "Style_1"},
            ),
            "Flow_1_di": DiEntry(
                "bpmndi:BPMNEdge",
                "Plane_1",
                "V",
                element="Flow_1",
                waypoints=[[0.0, 0.0], [10.0, -2.5]],
                label=[1.0, 2.0, 3.0, 4.0],
            ),
            "Style_1": DiEntry("bpmndi:BPMNLabelStyle", "Diagram_1", "s", font={"size": "11"}),
            "~di/Diagram_1/BPMNLabelStyle#1": DiEntry(
                "bpmndi:BPMNLabelStyle", "Diagram_1", "t", font={}, anon=True
            ),
        },
        raw={
            "/0": RawEntry("", "", "Z", '<bpmn:import xmlns:bpmn="urn:b"/>'),
            "Task_1/1": RawEntry("Task_1", "elements", "V", '<v:x xmlns:v="urn:v"/>'),
            "Task_1_di/2": RawEntry("Task_1_di", "di", "V", '<v:c xmlns:v="urn:v"/>'),
        },
    )


# Round trips ----------------------------------------------------------------------------------


def test_a_model_using_every_field_round_trips() -> None:
    model = full_model()
    assert read(load(model)) == model


def test_load_writes_the_schema_shape() -> None:
    doc = load(full_model())
    meta, elements, di, raw = root_maps(doc)
    assert meta["schema"] == 1
    assert meta["namespaces"] == [
        ["bpmn", "http://www.omg.org/spec/BPMN/20100524/MODEL"],
        ["", "urn:x"],
    ]
    assert isinstance(meta["definitions"], Map)
    task = elements["Task_1"]
    assert isinstance(task, Map) and isinstance(task["attrs"], Map)
    assert isinstance(task["text"], Map) and isinstance(task["body"], Map)
    assert "anon" not in task and elements["~Process_1/laneSet#0"]["anon"] is True
    shape = di["Task_1_di"]
    assert shape["bounds"] == [150.0, 80.5, 100.0, 80.0]
    assert shape["label"] == [] and isinstance(shape["labelAttrs"], Map)
    # Absent, not empty or null, when the model has none.
    assert {"waypoints", "font", "element", "labelAttrs"}.isdisjoint(di["Diagram_1"])
    assert isinstance(di["Style_1"]["font"], Map)
    assert raw["Task_1/1"].to_py() == {
        "parent": "Task_1",
        "slot": "elements",
        "order": "V",
        "xml": '<v:x xmlns:v="urn:v"/>',
    }


def test_load_is_one_transaction() -> None:
    updates: list[bytes] = []
    doc: Doc[Any] = Doc()
    doc.observe(lambda event: updates.append(event.update))
    load_into(doc, full_model())
    assert len(updates) == 1
    assert read(doc) == full_model()


def test_keys_table_names_every_schema_key() -> None:
    assert KEYS["LABEL_ATTRS"] == "labelAttrs" and KEYS["ANON"] == "anon"
    assert set(KEYS.values()) >= {"meta", "elements", "di", "raw", "font", "waypoints", "slot"}


@settings(max_examples=60, deadline=None)
@given(models())
def test_read_load_round_trips(model: BpmnModel) -> None:
    assert read(load(model)) == model


def test_read_gives_a_fresh_model_each_time() -> None:
    doc = load(full_model())
    first = read(doc)
    first.elements["Task_1"].attrs["name"] = "changed"
    assert read(doc) == full_model()


def test_an_empty_document_reads_as_an_empty_model_with_a_warning() -> None:
    model = read(Doc())
    assert (model.elements, model.di, model.raw) == ({}, {}, {})
    assert model.tag == "" and model.warnings
    assert all(warning.code == "crdt-bad-meta" for warning in model.warnings)


def parsed(path: Path) -> BpmnModel:
    parse: Callable[[bytes], BpmnModel] = pytest.importorskip("bpmn.parse").parse
    return parse(path.read_bytes())


@pytest.mark.parametrize("path", reference_files(), ids=lambda path: path.name)
def test_corpus_models_round_trip(path: Path) -> None:
    model = parsed(path)
    assert read(load(model)) == without_warnings(model)


# Tolerance: whatever a client wrote, read returns a model -------------------------------------


def junk_value(draw: st.DrawFn, depth: int = 0) -> Any:
    """Anything a Yjs client can put in a map value, shared types included."""
    leaves = [
        st.none(),
        st.booleans(),
        st.integers(-(2**60), 2**60),
        st.floats(),
        WORDS,
        st.binary(max_size=3),
    ]
    if depth < 2:
        leaves.append(st.lists(st.one_of(leaves), max_size=4))
        leaves.append(st.dictionaries(WORDS, st.one_of(leaves), max_size=3))
    kind = draw(
        st.sampled_from(["plain", "map", "array", "text", "xml"] if depth < 2 else ["plain"])
    )
    if kind == "map":
        return Map(
            {draw(WORDS): junk_value(draw, depth + 1) for _ in range(draw(st.integers(0, 3)))}
        )
    if kind == "array":
        return Array([junk_value(draw, depth + 1) for _ in range(draw(st.integers(0, 3)))])
    if kind == "text":
        return Text(draw(WORDS))
    if kind == "xml":
        return XmlFragment()
    return draw(st.one_of(leaves))


FIELDS = st.sampled_from(sorted({*KEYS.values()} - {"meta", "elements", "di", "raw"}))


@st.composite
def junk_documents(draw: st.DrawFn) -> Doc[Any]:
    """A valid document, then random junk written over random places of it."""
    doc = load(draw(models(max_elements=4)))
    meta, elements, di, raw = root_maps(doc)
    roots = [meta, elements, di, raw]
    for _ in range(draw(st.integers(1, 8))):
        place = draw(st.sampled_from(["root", "entry", "field", "nested", "namespace"]))
        target = draw(st.sampled_from(roots))
        # Sorted: a Y.Map iterates in no stable order, and Hypothesis must replay draws.
        entries = [v for _, v in sorted(target.items()) if isinstance(v, Map)]
        if place == "root" or not entries:
            target[draw(st.sampled_from(["E0", "D0", "R0", "x", *KEYS.values()]))] = junk_value(
                draw
            )
        elif place == "entry":
            target[draw(st.sampled_from(sorted(target.keys())))] = junk_value(draw)
        elif place == "field":
            draw(st.sampled_from(entries))[draw(FIELDS)] = junk_value(draw)
        elif place == "nested":
            nested = [v for e in entries for _, v in sorted(e.items()) if isinstance(v, Map)]
            draw(st.sampled_from(nested or entries))[draw(WORDS)] = junk_value(draw)
        else:
            meta["namespaces"] = [junk_value(draw, depth=2) for _ in range(draw(st.integers(0, 3)))]
    return doc


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk_documents())
def test_read_never_raises_and_returns_a_well_typed_model(doc: Doc[Any]) -> None:
    model = read(doc)
    check_types(model)
    assert read(doc) == model  # reading is deterministic


def check_types(model: BpmnModel) -> None:
    assert isinstance(model.tag, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in model.definitions.items())
    assert all(isinstance(p, str) and isinstance(u, str) for p, u in model.namespaces)
    for element in model.elements.values():
        assert isinstance(element.type, str) and element.type
        assert isinstance(element.parent, str) and isinstance(element.order, str)
        for strings in (element.attrs, element.text, element.body):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in strings.items())
        assert element.ext is None or isinstance(element.ext, str)
        assert isinstance(element.anon, bool)
    for shape in model.di.values():
        assert isinstance(shape.type, str) and shape.type
        assert shape.element is None or isinstance(shape.element, str)
        assert shape.bounds is None or (len(shape.bounds) == 4 and all_finite(shape.bounds))
        assert shape.label is None or (len(shape.label) in (0, 4) and all_finite(shape.label))
        assert shape.waypoints is None or all(
            len(point) == 2 and all_finite(point) for point in shape.waypoints
        )
        assert shape.font is None or all(isinstance(v, str) for v in shape.font.values())
        assert all(isinstance(v, str) for v in shape.label_attrs.values())
    for raw in model.raw.values():
        assert raw.slot in ("", "elements", "di") and isinstance(raw.xml, str)
    assert all(isinstance(warning, ModelWarning) for warning in model.warnings)


def all_finite(values: list[float]) -> bool:
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


def test_each_bad_value_is_skipped_or_normalised_with_a_warning() -> None:
    doc = load(full_model())
    meta, elements, di, raw = root_maps(doc)
    with doc.transaction():
        elements["junk"] = "not a map"
        elements["Lane_1"]["type"] = 7
        elements["Task_1"]["attrs"] = {"name": "plain dict", "bad": 3}
        elements["Task_1"]["text"] = "a string"
        elements["Task_1"]["anon"] = 1
        elements["Process_1"]["order"] = "bad0"
        elements["Process_1"]["parent"] = Map()
        di["Task_1_di"]["bounds"] = [1.0, 2.0, "3", 4.0]
        di["Flow_1_di"]["waypoints"] = [[1.0, 2.0], [3.0]]
        di["Flow_1_di"]["label"] = [1.0, math.inf, 2.0, 3.0]
        raw["/0"]["slot"] = "nowhere"
        raw["Task_1/1"]["xml"] = None
        meta["namespaces"] = [["a", "urn:a"], ["b"], "c"]
    model = read(doc)
    assert "junk" not in model.elements and "Lane_1" not in model.elements
    task = model.elements["Task_1"]
    assert task.attrs == {"name": "plain dict"} and task.text == {} and task.anon is False
    assert model.elements["Process_1"].order == "bad0"
    assert model.elements["Process_1"].parent == ""
    assert model.di["Task_1_di"].bounds is None and model.di["Flow_1_di"].waypoints is None
    assert model.di["Flow_1_di"].label is None
    assert model.raw["/0"].slot == "" and "Task_1/1" not in model.raw
    assert model.namespaces == [("a", "urn:a")]
    assert {w.code for w in model.warnings} == {"crdt-bad-entry", "crdt-bad-value", "crdt-bad-meta"}
    assert len(model.warnings) == 14


def test_root_types_of_the_wrong_kind_read_as_empty() -> None:
    peer: Doc[Any] = Doc()
    peer.get("elements", type=Array).append("junk")
    peer.get("meta", type=Text).insert(0, "junk")
    doc: Doc[Any] = Doc()
    doc.apply_update(peer.get_update())
    model = read(doc)
    assert model.elements == {} and model.tag == ""


def test_an_entry_map_is_a_preliminary_map() -> None:
    prelim = entry_map(full_model().elements["Task_1"])
    assert isinstance(prelim, Map) and not prelim.is_integrated
