"""Model -> XML: deterministic output, derived flows, vendor XML in place, and repair.

Repair cases build models the way a client could leave them (``read`` of a CRDT document hands
back whatever was written): render must never fail, and says what it fixed.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bpmn.document import load, read
from bpmn.hierarchy import MAX_NESTING
from bpmn.model import BpmnModel, DiEntry, Element, RawEntry
from bpmn.parse import parse
from bpmn.render import render
from bpmn.repair import REPAIRED, repair
from bpmn.semantic import canonical
from tests.samples import reference_files

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
XBPMN = f'xmlns:x="{BPMN}"'
NS = {"bpmn": BPMN, "bpmndi": BPMNDI, "dc": DC, "di": DI}


def base(**entries: Element) -> BpmnModel:
    """A model with a process ``p`` and a diagram for it, plus ``entries``."""
    elements = {"p": Element("bpmn:process", "", "1", {"isExecutable": "false"})}
    elements.update(entries)
    return BpmnModel(
        tag="bpmn:definitions",
        definitions={"id": "defs", "targetNamespace": "urn:t"},
        namespaces=[("bpmn", BPMN), ("bpmndi", BPMNDI), ("dc", DC), ("di", DI)],
        elements=elements,
        di={
            "d": DiEntry("bpmndi:BPMNDiagram", "", "2"),
            "pl": DiEntry("bpmndi:BPMNPlane", "d", "1", element="p"),
        },
    )


def tree(model: BpmnModel) -> etree._Element:
    return etree.fromstring(render(model))


def repaired(model: BpmnModel) -> list[str]:
    return [w.message for w in repair(model).warnings if w.code == REPAIRED]


# --- output ---------------------------------------------------------------------------------


def test_a_small_model_renders_exactly() -> None:
    model = base(
        t=Element(
            "bpmn:task", "p", "1", {"name": 'Check "A" & <B>'}, {"bpmn:documentation#0": "x<y"}
        )
    )
    model.di["t_di"] = DiEntry("bpmndi:BPMNShape", "pl", "1", element="t", bounds=[1.0, 2.5, 3, 4])
    assert render(model).decode() == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<bpmn:definitions xmlns:bpmn="{BPMN}" xmlns:bpmndi="{BPMNDI}" xmlns:dc="{DC}" '
        f'xmlns:di="{DI}" id="defs" targetNamespace="urn:t">\n'
        '  <bpmn:process id="p" isExecutable="false">\n'
        '    <bpmn:task id="t" name="Check &quot;A&quot; &amp; &lt;B&gt;">\n'
        "      <bpmn:documentation>x&lt;y</bpmn:documentation>\n"
        "    </bpmn:task>\n"
        "  </bpmn:process>\n"
        '  <bpmndi:BPMNDiagram id="d">\n'
        '    <bpmndi:BPMNPlane id="p_di" bpmnElement="p">\n'.replace("p_di", "pl")
        + '      <bpmndi:BPMNShape id="t_di" bpmnElement="t">\n'
        '        <dc:Bounds x="1" y="2.5" width="3" height="4"/>\n'
        "      </bpmndi:BPMNShape>\n"
        "    </bpmndi:BPMNPlane>\n"
        "  </bpmndi:BPMNDiagram>\n"
        "</bpmn:definitions>\n"
    )


def shuffled(model: BpmnModel, seed: int) -> BpmnModel:
    rng = random.Random(seed)

    def mix(table: dict[str, object]) -> dict[str, object]:
        items = list(table.items())
        rng.shuffle(items)
        return dict(items)

    copy_ = copy.deepcopy(model)
    for entry in [*copy_.elements.values(), *copy_.di.values()]:
        entry.attrs = mix(entry.attrs)  # type: ignore[arg-type]
    copy_.elements = mix(copy_.elements)  # type: ignore[arg-type]
    copy_.di = mix(copy_.di)  # type: ignore[arg-type]
    copy_.raw = mix(copy_.raw)  # type: ignore[arg-type]
    copy_.definitions = mix(copy_.definitions)  # type: ignore[arg-type]
    return copy_


@pytest.mark.parametrize("path", reference_files()[:6], ids=lambda path: path.name)
def test_render_does_not_depend_on_dict_order(path: object) -> None:
    model = parse(path.read_bytes())  # type: ignore[attr-defined]
    expected = render(model)
    for seed in range(3):
        assert render(shuffled(model, seed)) == expected


@pytest.mark.parametrize("path", reference_files(), ids=lambda path: path.name)
def test_a_trip_through_a_crdt_document_changes_nothing(path: object) -> None:
    model = parse(path.read_bytes())  # type: ignore[attr-defined]
    assert render(read(load(model))) == render(model)


def test_numbers_from_a_client_may_be_ints_floats_lists_or_tuples() -> None:
    model = base(t=Element("bpmn:task", "p", "1"), f=Element("bpmn:sequenceFlow", "p", "2"))
    model.di["s"] = DiEntry(
        "bpmndi:BPMNShape",
        "pl",
        "1",
        element="t",
        bounds=(10, 20.0, 100.25, 8e1),  # type: ignore[arg-type]
    )
    model.di["e"] = DiEntry(
        "bpmndi:BPMNEdge",
        "pl",
        "2",
        element="f",
        waypoints=[(1, 2), [3.5, -0.0]],
        label=[],  # type: ignore[list-item]
    )
    root = tree(model)
    bounds = root.find(".//dc:Bounds", NS)
    assert bounds is not None
    assert dict(bounds.attrib) == {"x": "10", "y": "20", "width": "100.25", "height": "80"}
    points = [dict(p.attrib) for p in root.iterfind(".//di:waypoint", NS)]
    assert points == [{"x": "1", "y": "2"}, {"x": "3.5", "y": "0"}]
    assert root.find(".//bpmndi:BPMNEdge/bpmndi:BPMNLabel", NS) is not None
    assert repaired(model) == []


def test_incoming_and_outgoing_are_written_from_the_flows() -> None:
    model = base(
        a=Element("bpmn:startEvent", "p", "1"),
        b=Element(
            "bpmn:userTask",
            "p",
            "2",
            text={"bpmn:documentation#0": "d"},
            ext='<bpmn:extensionElements xmlns:bpmn="' + BPMN + '"/>',
            body={
                "bpmn:standardLoopCharacteristics#0": f"<x:standardLoopCharacteristics {XBPMN}/>"
            },
        ),
        f2=Element("bpmn:sequenceFlow", "p", "4", {"sourceRef": "a", "targetRef": "b"}),
        f1=Element("bpmn:sequenceFlow", "p", "3", {"sourceRef": "a", "targetRef": "b"}),
        f3=Element("bpmn:sequenceFlow", "p", "5", {"sourceRef": "b", "targetRef": "gone"}),
        m=Element("bpmn:messageFlow", "p", "6", {"sourceRef": "a", "targetRef": "b"}),
    )
    root = tree(model)
    task = root.find(".//bpmn:userTask", NS)
    assert task is not None
    assert [etree.QName(child).localname for child in task] == [
        "documentation",
        "extensionElements",
        "incoming",
        "incoming",
        "outgoing",
        "standardLoopCharacteristics",
    ]
    assert [child.text for child in task.iterfind("bpmn:incoming", NS)] == ["f1", "f2"]
    assert [child.text for child in task.iterfind("bpmn:outgoing", NS)] == ["f3"]
    start = root.find(".//bpmn:startEvent", NS)
    assert start is not None
    assert [child.text for child in start] == ["f1", "f2"]
    # Not for what is no flow node, and not in another namespace.
    assert root.find(".//bpmn:process/bpmn:incoming", NS) is None


def test_vendor_xml_keeps_its_place() -> None:
    model = base(
        a=Element("bpmn:task", "p", "1"),
        b=Element("bpmn:task", "p", "3"),
        g=Element("bpmn:textAnnotation", "p", "4"),
    )
    model.raw = {
        "p/0": RawEntry("p", "elements", "2", '<v:note xmlns:v="urn:v"/>'),
        "p/1": RawEntry("p", "elements", "5", '<v:last xmlns:v="urn:v"/>'),
        "p/2": RawEntry("p", "elements", "05", '<v:first xmlns:v="urn:v"/>'),
        "/0": RawEntry("", "", "9", f'<bpmn:import xmlns:bpmn="{BPMN}" namespace="urn:i"/>'),
    }
    model.di["s"] = DiEntry("bpmndi:BPMNShape", "pl", "1", element="a", bounds=[0, 0, 1, 1])
    model.raw["s/0"] = RawEntry("s", "di", "2", '<v:CollapsedBounds xmlns:v="urn:v"/>')
    model.raw["s/1"] = RawEntry("s", "di", "1", f'<di:extension xmlns:di="{DI}"/>')
    root = tree(model)
    process = root.find("bpmn:process", NS)
    assert process is not None
    names = [etree.QName(child).localname for child in process]
    assert names == ["first", "task", "note", "task", "textAnnotation", "last"]
    assert etree.QName(root[0]).localname == "import"  # the schema puts imports first
    shape = root.find(".//bpmndi:BPMNShape", NS)
    assert shape is not None
    assert [etree.QName(child).localname for child in shape] == [
        "extension",
        "Bounds",
        "CollapsedBounds",
    ]
    assert b'<v:note xmlns:v="urn:v"/>' in render(model)
    assert b'<bpmn:import namespace="urn:i"/>' in render(model)  # the root declares bpmn


def test_an_unqualified_fragment_undeclares_the_default_namespace() -> None:
    model = base(
        t=Element(
            "task", "p", "1", ext=f'<extensionElements xmlns="{BPMN}"><x/></extensionElements>'
        )
    )
    model.namespaces = [("", BPMN), *model.namespaces[1:]]
    model.tag, model.elements["p"].type = "definitions", "process"
    model.raw["t/0"] = RawEntry("t", "elements", "1", "<loose/>")
    out = render(model)
    assert b'<loose xmlns=""/>' in out
    assert b"<extensionElements><x/></extensionElements>" in out
    loose = etree.fromstring(out).find(".//loose")
    assert loose is not None


def test_text_of_an_element_is_written_without_indentation() -> None:
    model = base(
        c=Element(
            "bpmn:conditionExpression", "p", "1", text={".": "a < b", "bpmn:documentation#0": "d"}
        )
    )
    assert b'<bpmn:conditionExpression id="c">a &lt; b<bpmn:documentation>d' in render(model)


# --- repair ---------------------------------------------------------------------------------


def test_repair_is_pure_and_keeps_earlier_warnings() -> None:
    model = base(t=Element("bpmn:task", "gone", "1"))
    before = copy.deepcopy(model)
    fixed = repair(model)
    assert model == before
    assert fixed.elements["t"].parent == "p"
    assert repair(replace(model, warnings=before.warnings)).warnings[0].code == REPAIRED


def test_dangling_shapes_are_dropped() -> None:
    model = base(t=Element("bpmn:task", "p", "1"))
    model.di["s"] = DiEntry("bpmndi:BPMNShape", "pl", "1", element="t")
    model.di["ghost"] = DiEntry("bpmndi:BPMNShape", "pl", "2", element="deleted")
    model.di["ns"] = DiEntry("bpmndi:BPMNShape", "pl", "3", element="x:t")
    model.raw["ghost/0"] = RawEntry("ghost", "di", "1", "<v:x xmlns:v='urn:v'/>")
    model.di["pl"].element = "gone-too"  # a plane is kept
    fixed = repair(model)
    assert set(fixed.di) == {"d", "pl", "s", "ns"}
    assert fixed.raw == {}
    assert any("'ghost'" in message for message in repaired(model))


def test_elements_of_a_missing_parent_are_re_homed() -> None:
    model = base(
        t=Element("bpmn:task", "deleted-subprocess", "1"),
        m=Element("bpmn:message", "deleted", "1"),
        q=Element("bpmn:process", "", "0"),
    )
    model.raw["deleted/0"] = RawEntry("deleted", "elements", "1", "<v:x xmlns:v='urn:v'/>")
    fixed = repair(model)
    assert fixed.elements["t"].parent == "q"  # the first process, by order
    assert fixed.elements["m"].parent == ""
    assert fixed.raw == {}
    assert len(repaired(model)) == 3


def test_a_cycle_is_cut() -> None:
    model = base(
        a=Element("bpmn:subProcess", "b", "1"),
        b=Element("bpmn:subProcess", "a", "1"),
        c=Element("bpmn:task", "b", "1"),
    )
    fixed = repair(model)
    assert fixed.elements["a"].parent == "p"
    assert fixed.elements["b"].parent == "a"
    root = tree(model)
    assert len(root.findall(".//bpmn:subProcess", NS)) == 2
    assert len(root.findall(".//bpmn:task", NS)) == 1


def test_absurd_nesting_is_flattened() -> None:
    chain = {
        f"s{n}": Element("bpmn:subProcess", f"s{n - 1}" if n else "p", "1") for n in range(300)
    }
    model = base(**chain)
    fixed = repair(model)
    depth = {"": 0}

    def level(key: str) -> int:
        if key not in depth:
            depth[key] = level(fixed.elements[key].parent) + 1
        return depth[key]

    assert max(level(key) for key in fixed.elements) <= MAX_NESTING
    assert len(tree(model).findall(".//bpmn:subProcess", NS)) == 300


def test_garbage_geometry_is_dropped() -> None:
    model = base(t=Element("bpmn:task", "p", "1"), f=Element("bpmn:sequenceFlow", "p", "2"))
    model.di["s"] = DiEntry(
        "bpmndi:BPMNShape",
        "pl",
        "1",
        element="t",
        bounds=["1", 2, 3, 4],  # type: ignore[list-item]
        label=[1, 2, 3],
        font={"name": "Arial", "size": 9},  # type: ignore[dict-item]
    )
    model.di["e"] = DiEntry(
        "bpmndi:BPMNEdge",
        "pl",
        "2",
        element="f",
        waypoints=[[1, 2], [float("nan"), 1], [True, 2], "x", [3, 4, 5], [5, 6]],  # type: ignore[list-item]
        label=[float("inf"), 0, 0, 0],
    )
    fixed = repair(model)
    shape, edge = fixed.di["s"], fixed.di["e"]
    assert (shape.bounds, shape.label, shape.font) == (None, None, {"name": "Arial", "size": "9"})
    assert edge.waypoints == [[1.0, 2.0], [5.0, 6.0]]
    assert edge.label is None
    assert len(repaired(model)) == 4
    tree(model)


def test_names_with_unknown_prefixes_are_dropped_and_well_known_ones_declared() -> None:
    model = base(
        a=Element("foo:bar", "p", "1"),
        b=Element(
            "bpmn:task", "a", "1", {"foo:x": "1", "xsi:type": "t", "bad name": "2", "ok": "3"}
        ),
        c=Element("bpmn:task", "p", "2", text={"foo:documentation#0": "x", "bpmn:text#0": "y"}),
        d=Element("foo:task", "p", "3"),
        e=Element("task", "p", "4"),
    )
    model.di["s"] = DiEntry("Shape", "pl", "1", element="d")
    model.di["t"] = DiEntry("x:BPMNShape", "pl", "2", element="e")
    fixed = repair(model)
    assert "a" not in fixed.elements
    assert "s" not in fixed.di
    # A type the schema knows is written in the BPMN (BPMNDI) namespace.
    assert (fixed.elements["d"].type, fixed.elements["e"].type) == ("bpmn:task", "bpmn:task")
    assert fixed.di["t"].type == "bpmndi:BPMNShape"
    assert fixed.elements["b"].parent == "p"
    assert fixed.elements["b"].attrs == {"xsi:type": "t", "ok": "3"}
    assert fixed.elements["c"].text == {"bpmn:text#0": "y"}
    assert ("xsi", "http://www.w3.org/2001/XMLSchema-instance") in fixed.namespaces
    tree(model)


def test_values_are_made_writable() -> None:
    model = base(
        t=Element(
            "bpmn:task",
            "p",
            "",
            {"n": 5, "b": True, "d": {"x": 1}, "c": "bell\x07 and \ud800"},  # type: ignore[dict-item]
            body={"bpmn:script#0": "<unclosed>", "bpmn:text#0": "<!DOCTYPE x><x/>"},
            ext="<a/><b/>",
        ),
        u=Element("bpmn:task", "p", "not a key!"),
    )
    fixed = repair(model)
    task = fixed.elements["t"]
    assert task.attrs == {"n": "5", "b": "true", "c": "bell and "}
    assert task.body == {} and task.ext is None
    assert fixed.elements["u"].order > fixed.elements["t"].order > ""
    tree(model)


def test_broken_meta_and_namespaces() -> None:
    model = base()
    model.tag = "nope:definitions"
    model.namespaces = [
        ("", ""),
        ("xml", "urn:x"),
        ("p", 5),
        ("bpmn", BPMN),
        ("bpmn", "urn:other"),
        "junk",
    ]  # type: ignore[list-item]
    fixed = repair(model)
    assert fixed.tag == "bpmn:definitions"
    assert fixed.namespaces[0] == ("bpmn", BPMN)
    root = tree(model)
    assert root.tag == f"{{{BPMN}}}definitions"


def test_ids_are_written_once() -> None:
    model = base(t=Element("bpmn:task", "p", "1"))
    model.definitions["id"] = "t"
    model.di["t"] = DiEntry(
        "bpmndi:BPMNShape", "pl", "1", element="t", label=[], label_attrs={"id": "p"}
    )
    model.di["x"] = DiEntry(
        "bpmndi:BPMNShape", "pl", "2", element="t", label=[], label_attrs={"id": "L"}
    )
    fixed = repair(model)
    assert "id" not in fixed.definitions
    assert set(fixed.di) == {"d", "pl", "x"}
    parse(render(model))  # no DuplicateId


def test_wrong_kinds_of_entries_are_dropped() -> None:
    model = base()
    model.elements["x"] = DiEntry("bpmn:task", "p", "1")  # type: ignore[assignment]
    model.di["y"] = "not an entry"  # type: ignore[assignment]
    model.raw["z"] = RawEntry("nowhere", "elements", "1", "<a/>")
    model.raw["w"] = RawEntry("p", "bogus", "1", "<a/>")  # type: ignore[arg-type]
    fixed = repair(model)
    assert "x" not in fixed.elements and "y" not in fixed.di and fixed.raw == {}


# --- never fails ----------------------------------------------------------------------------

names = st.sampled_from(
    [
        "bpmn:task",
        "bpmn:process",
        "bpmn:sequenceFlow",
        "bpmn:subProcess",
        "bpmn:laneSet",
        "bpmn:documentation",
        "bpmn:incoming",
        "bpmn:timerEventDefinition",
        "foo:bar",
        "",
        "task",
        "a b",
    ]
)
keys = st.sampled_from(["p", "t", "u", "v", "", "~x", "d", "pl", "x/0"])
texts = st.one_of(st.text(max_size=8), st.integers(), st.floats(), st.none(), st.booleans())
orders = st.sampled_from(["", "1", "2", "05", "z", "0"])
fragments = st.sampled_from(
    [
        "<a/>",
        "<a",
        "",
        f'<bpmn:task xmlns:bpmn="{BPMN}" id="t"/>',
        f'<bpmn:documentation xmlns:bpmn="{BPMN}">d</bpmn:documentation>',
        f'<bpmn:extensionElements xmlns:bpmn="{BPMN}"/>',
        '<v:x xmlns:v="urn:v"/>',
        f'<di:extension xmlns:di="{DI}"/>',
    ]
)
elements = st.builds(
    Element,
    type=names,
    parent=keys,
    order=orders,
    attrs=st.dictionaries(
        st.sampled_from(["name", "sourceRef", "targetRef", "id", "xsi:type", "x:y", "xmlns"]),
        st.one_of(keys, texts),
        max_size=3,
    ),
    text=st.dictionaries(
        st.sampled_from([".", "bpmn:documentation#0", "bpmn:incoming#0", "x#y"]), texts, max_size=2
    ),
    body=st.dictionaries(
        st.sampled_from(["bpmn:script#0", "bpmn:documentation#1", "bpmn:task#0"]),
        fragments,
        max_size=2,
    ),
    ext=st.one_of(st.none(), fragments),
    anon=st.booleans(),
)
geometry = st.one_of(
    st.none(),
    st.just([1, 2, 3, 4]),
    st.lists(st.one_of(st.floats(), st.integers(), st.text(max_size=2)), max_size=5),
)
diagram = st.builds(
    DiEntry,
    type=st.sampled_from(
        ["bpmndi:BPMNShape", "bpmndi:BPMNEdge", "bpmndi:BPMNPlane", "bpmndi:BPMNDiagram", "x"]
    ),
    parent=keys,
    order=orders,
    element=st.one_of(st.none(), keys),
    bounds=geometry,
    waypoints=st.one_of(st.none(), st.lists(geometry, max_size=3)),
    label=geometry,
    label_attrs=st.dictionaries(st.sampled_from(["id", "labelStyle"]), keys, max_size=2),
    font=st.one_of(st.none(), st.dictionaries(st.text(max_size=4), texts, max_size=2)),
    anon=st.booleans(),
)
raws = st.builds(
    RawEntry,
    parent=keys,
    slot=st.sampled_from(["elements", "di", ""]),
    order=orders,
    xml=fragments,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    elements=st.dictionaries(keys, elements, max_size=8),
    di=st.dictionaries(keys, diagram, max_size=5),
    raw=st.dictionaries(st.text(max_size=3), raws, max_size=4),
    tag=st.sampled_from(["bpmn:definitions", "definitions", "", "x:y"]),
)
def test_render_never_fails(
    elements: dict[str, Element], di: dict[str, DiEntry], raw: dict[str, RawEntry], tag: str
) -> None:
    """Whatever a client wrote: render writes XML that parse takes, meaning the same when
    rendered again; from then on, the bytes are stable too."""
    model = BpmnModel(tag, {"id": "defs"}, [("bpmn", BPMN), ("bpmndi", BPMNDI)], elements, di, raw)
    out = render(model)
    again = render(parse(out))
    assert canonical(again) == canonical(out)
    assert render(parse(again)) == again
