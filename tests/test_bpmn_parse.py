"""BPMN XML -> document model: the shape ``docs/crdt-schema.md`` promises, case by case."""

from __future__ import annotations

import pytest
from lxml import etree

from bpmn.model import BpmnModel
from bpmn.order import is_key
from bpmn.parse import CHILD_ORDER, parse
from bpmn.qnames import NAMESPACE_CONFLICT
from bpmn.references import DANGLING_REFERENCE
from bpmn.render import render
from core.errors import DuplicateId, NotBpmn

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NAMESPACES = (
    f'xmlns:bpmn="{BPMN}" xmlns:bpmndi="{BPMNDI}" xmlns:dc="{DC}" xmlns:di="{DI}" '
    f'xmlns:xsi="{XSI}" xmlns:v="urn:vendor"'
)


def model(body: str, namespaces: str = NAMESPACES) -> BpmnModel:
    head = f'<bpmn:definitions {namespaces} id="defs" targetNamespace="urn:t">'
    xml = f"{head}{body}</bpmn:definitions>"
    return parse(xml.encode())


def codes(parsed: BpmnModel) -> list[str]:
    return [warning.code for warning in parsed.warnings]


# --- meta -----------------------------------------------------------------------------------


def test_meta() -> None:
    parsed = model('<bpmn:process id="p"/>')
    assert parsed.tag == "bpmn:definitions"
    assert parsed.definitions == {"id": "defs", "targetNamespace": "urn:t"}
    assert parsed.namespaces == [
        ("bpmn", BPMN),
        ("bpmndi", BPMNDI),
        ("dc", DC),
        ("di", DI),
        ("xsi", XSI),
        ("v", "urn:vendor"),
    ]
    assert parsed.warnings == []


def test_namespaces_of_descendants_are_collected_first_binding_wins() -> None:
    parsed = model(
        '<bpmn:process id="p" xmlns:a="urn:a"><bpmn:task id="t" xmlns:b="urn:b" b:x="1"/>'
        '<bpmn:task id="u" xmlns:a="urn:a"/></bpmn:process>'
    )
    assert parsed.namespaces[-2:] == [("a", "urn:a"), ("b", "urn:b")]
    assert parsed.elements["t"].attrs == {"b:x": "1"}
    assert parsed.warnings == []


def test_a_prefix_bound_twice_is_renamed_with_a_warning() -> None:
    # Bizagi: the default namespace is BPMN at the root and BPMNDI in the diagram.
    parsed = parse(
        f'<definitions xmlns="{BPMN}" id="d"><process id="p"><task id="t"/></process>'
        f'<BPMNDiagram xmlns="{BPMNDI}" id="dia"><BPMNPlane id="pl" bpmnElement="p">'
        f'<BPMNShape id="s" bpmnElement="t"><Bounds xmlns="{DC}" x="1" y="2" width="3" '
        'height="4"/></BPMNShape></BPMNPlane></BPMNDiagram></definitions>'.encode()
    )
    assert parsed.elements["t"].type == "task"
    assert parsed.di["dia"].type == "bpmndi:BPMNDiagram"
    assert parsed.di["s"].type == "bpmndi:BPMNShape"
    assert parsed.di["s"].bounds == [1.0, 2.0, 3.0, 4.0]
    assert parsed.namespaces == [("", BPMN), ("bpmndi", BPMNDI)]
    (warning,) = parsed.warnings
    assert warning.code == NAMESPACE_CONFLICT
    assert warning.id == "dia"
    assert warning.line == 1
    assert "'bpmndi'" in warning.message


def test_names_keep_the_prefixes_written() -> None:
    parsed = parse(
        f'<semantic:definitions xmlns:semantic="{BPMN}" xmlns:i="{XSI}" id="d">'
        '<semantic:process id="p"><semantic:sequenceFlow id="f" sourceRef="a" targetRef="b">'
        '<semantic:conditionExpression i:type="semantic:tFormalExpression">x'
        "</semantic:conditionExpression>"
        "</semantic:sequenceFlow></semantic:process></semantic:definitions>".encode()
    )
    flow = parsed.elements["f"]
    assert flow.type == "semantic:sequenceFlow"
    assert flow.body == {
        "semantic:conditionExpression#0": (
            f'<semantic:conditionExpression xmlns:semantic="{BPMN}" xmlns:i="{XSI}" '
            'i:type="semantic:tFormalExpression">x</semantic:conditionExpression>'
        )
    }


def test_the_root_must_be_definitions() -> None:
    with pytest.raises(NotBpmn):
        parse(f'<process xmlns="{BPMN}" id="p"/>'.encode())


def test_duplicate_ids_say_where() -> None:
    with pytest.raises(DuplicateId) as caught:
        model('<bpmn:process id="p"/>\n<bpmndi:BPMNDiagram id="p"/>')
    assert caught.value.lines == {"p": [1, 2]}


# --- elements -------------------------------------------------------------------------------


def test_elements_parents_and_order() -> None:
    parsed = model(
        '<bpmn:process id="p" isExecutable="false"><bpmn:startEvent id="s" name="Start"/>'
        '<bpmn:task id="t"/><bpmn:endEvent id="e"/></bpmn:process><bpmn:message id="m"/>'
    )
    process = parsed.elements["p"]
    assert (process.type, process.parent, process.attrs) == (
        "bpmn:process",
        "",
        {"isExecutable": "false"},
    )
    assert parsed.elements["s"].attrs == {"name": "Start"}
    orders = [parsed.elements[key].order for key in ("s", "t", "e")]
    assert orders == sorted(orders) and all(is_key(order) for order in orders)
    assert {parsed.elements[key].parent for key in ("s", "t", "e")} == {"p"}
    assert parsed.elements["p"].order < parsed.elements["m"].order


def test_an_id_less_container_of_ids_is_an_anonymous_entry() -> None:
    parsed = model(
        '<bpmn:process id="p"><bpmn:laneSet><bpmn:lane id="l1">'
        "<bpmn:flowNodeRef>t</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet><bpmn:laneSet/>"
        '<bpmn:laneSet><bpmn:lane id="l2"/></bpmn:laneSet>'
        '<bpmn:task id="t"/></bpmn:process>'
    )
    first, second = parsed.elements["~p/laneSet#0"], parsed.elements["~p/laneSet#2"]
    assert first.anon and second.anon
    assert parsed.elements["l1"].parent == "~p/laneSet#0"
    assert parsed.elements["l1"].text == {"bpmn:flowNodeRef#0": "t"}
    assert parsed.elements["l2"].parent == "~p/laneSet#2"
    # The empty laneSet has no ids inside, but shares its rank with entries: it is one too.
    assert parsed.elements["~p/laneSet#1"].anon
    assert b"<bpmn:laneSet>" in render(parsed)


def test_slots() -> None:
    parsed = model(
        '<bpmn:process id="p"><bpmn:task id="t">'
        "<bpmn:documentation>plain</bpmn:documentation>"
        '<bpmn:documentation textFormat="text/html">&lt;b&gt;</bpmn:documentation>'
        "<bpmn:extensionElements><v:x a='1'/></bpmn:extensionElements>"
        "<bpmn:incoming>f</bpmn:incoming>"
        "<bpmn:standardLoopCharacteristics/>"
        "</bpmn:task><bpmn:intermediateCatchEvent id='c'><bpmn:timerEventDefinition>"
        "<bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition>"
        "</bpmn:intermediateCatchEvent></bpmn:process>"
    )
    task = parsed.elements["t"]
    assert task.text == {
        "bpmn:documentation#0": "plain",
        "bpmn:standardLoopCharacteristics#0": "",
    }
    assert task.body == {
        "bpmn:documentation#1": (
            f'<bpmn:documentation xmlns:bpmn="{BPMN}" textFormat="text/html">'
            "&lt;b&gt;</bpmn:documentation>"
        )
    }
    assert task.ext == (
        f'<bpmn:extensionElements xmlns:bpmn="{BPMN}" xmlns:v="urn:vendor">'
        '<v:x a="1"/></bpmn:extensionElements>'
    )
    assert list(parsed.elements["c"].body) == ["bpmn:timerEventDefinition#0"]
    assert parsed.raw == {}


def test_own_text() -> None:
    parsed = model(
        '<bpmn:process id="p"><bpmn:sequenceFlow id="f" sourceRef="a" targetRef="b">'
        '<bpmn:conditionExpression id="c" xsi:type="bpmn:tFormalExpression">\n'
        "  ${a &gt; b}\n</bpmn:conditionExpression></bpmn:sequenceFlow>"
        '<bpmn:task id="t">\n  <bpmn:documentation>d</bpmn:documentation>\n</bpmn:task>'
        "</bpmn:process>"
    )
    assert parsed.elements["c"].text == {".": "\n  ${a > b}\n"}
    assert "." not in parsed.elements["t"].text


def test_open_containers_with_ids_are_not_entries() -> None:
    parsed = model(
        '<bpmn:process id="p"><bpmn:documentation id="doc">d</bpmn:documentation></bpmn:process>'
    )
    assert "doc" not in parsed.elements
    assert list(parsed.elements["p"].body) == ["bpmn:documentation#0"]


def test_incoming_and_outgoing_of_flow_nodes_are_not_kept() -> None:
    parsed = model(
        '<bpmn:process id="p"><bpmn:task id="t"><bpmn:incoming>f</bpmn:incoming>'
        "<bpmn:outgoing>g</bpmn:outgoing></bpmn:task></bpmn:process>"
    )
    assert parsed.elements["t"].text == {}


def test_id_less_children_sharing_a_rank_keep_their_order() -> None:
    parsed = model(
        '<bpmn:process id="p"><bpmn:intermediateThrowEvent id="e">'
        "<bpmn:timerEventDefinition/><bpmn:escalationEventDefinition/>"
        '</bpmn:intermediateThrowEvent><bpmn:task id="a"/><bpmn:task/><bpmn:task id="b"/>'
        "</bpmn:process>"
    )
    timer = parsed.elements["~e/timerEventDefinition#0"]
    escalation = parsed.elements["~e/escalationEventDefinition#0"]
    assert timer.order < escalation.order
    middle = parsed.elements["~p/task#0"]
    assert parsed.elements["a"].order < middle.order < parsed.elements["b"].order


# --- diagram interchange --------------------------------------------------------------------

DIAGRAM = (
    '<bpmn:process id="p"><bpmn:task id="t"/><bpmn:sequenceFlow id="f" sourceRef="t" '
    'targetRef="t"/></bpmn:process><bpmndi:BPMNDiagram id="d"><bpmndi:BPMNPlane id="pl" '
    'bpmnElement="p">{shapes}</bpmndi:BPMNPlane>{styles}</bpmndi:BPMNDiagram>'
)


def diagram(shapes: str, styles: str = "") -> BpmnModel:
    return model(DIAGRAM.format(shapes=shapes, styles=styles))


def test_shapes_edges_labels_and_styles() -> None:
    parsed = diagram(
        '<bpmndi:BPMNShape id="s" bpmnElement="t" isHorizontal="true" v:color="red">'
        '<dc:Bounds x="10" y="20.5" width="100" height="80"/>'
        '<bpmndi:BPMNLabel id="lab" labelStyle="st"><dc:Bounds x="1" y="2" width="3" height="4"/>'
        "</bpmndi:BPMNLabel></bpmndi:BPMNShape>"
        '<bpmndi:BPMNEdge id="e" bpmnElement="f"><di:waypoint x="1" y="2"/>'
        '<di:waypoint xsi:type="dc:Point" x="3" y="4"/><bpmndi:BPMNLabel/></bpmndi:BPMNEdge>',
        '<bpmndi:BPMNLabelStyle id="st"><dc:Font name="Arial" size="9"/></bpmndi:BPMNLabelStyle>',
    )
    shape, edge, style = parsed.di["s"], parsed.di["e"], parsed.di["st"]
    assert (shape.type, shape.parent, shape.element) == ("bpmndi:BPMNShape", "pl", "t")
    assert shape.attrs == {"isHorizontal": "true", "v:color": "red"}
    assert shape.bounds == [10.0, 20.5, 100.0, 80.0]
    assert shape.label == [1.0, 2.0, 3.0, 4.0]
    assert shape.label_attrs == {"id": "lab", "labelStyle": "st"}
    assert edge.waypoints == [[1.0, 2.0], [3.0, 4.0]]
    assert edge.label == []
    assert style.font == {"name": "Arial", "size": "9"}
    assert parsed.di["d"].parent == "" and parsed.di["pl"].parent == "d"
    assert parsed.raw == {}
    assert parsed.warnings == []


def test_id_less_diagram_elements_get_synthetic_keys() -> None:
    parsed = model(
        '<bpmn:process id="p"><bpmn:task id="t"/></bpmn:process>'
        + '<bpmndi:BPMNDiagram><bpmndi:BPMNPlane bpmnElement="p">'
        '<bpmndi:BPMNShape bpmnElement="t"/></bpmndi:BPMNPlane></bpmndi:BPMNDiagram>' * 2
    )
    assert set(parsed.di) == {
        "~di//BPMNDiagram#0",
        "~di//BPMNDiagram#1",
        "~di/p",
        "~di/~di//BPMNDiagram#1/BPMNPlane#0",
        "~di/t",
        "~di/~di/~di//BPMNDiagram#1/BPMNPlane#0/BPMNShape#0",
    }
    assert all(entry.anon for entry in parsed.di.values())


@pytest.mark.parametrize(
    "content",
    [
        '<dc:Bounds x="1" y="2" width="3"/>',
        '<dc:Bounds x="1" y="2" width="3" height="NaN"/>',
        '<dc:Bounds x="1" y="2" width="3" height="4" v:z="1"/>',
        '<dc:Bounds x="1" y="2" width="3" height="1_0"/>',
        '<bpmndi:BPMNLabel><di:extension/><dc:Bounds x="1" y="2" width="3" height="4"/>'
        "</bpmndi:BPMNLabel>",
        '<v:CollapsedBounds x="1"/>',
    ],
    ids=["no-height", "nan", "vendor-attribute", "underscore", "label-extension", "vendor"],
)
def test_geometry_the_model_cannot_hold_is_kept_raw(content: str) -> None:
    parsed = diagram(f'<bpmndi:BPMNShape id="s" bpmnElement="t">{content}</bpmndi:BPMNShape>')
    shape = parsed.di["s"]
    assert shape.bounds is None and shape.label is None
    (raw,) = parsed.raw.values()
    assert (raw.parent, raw.slot) == ("s", "di")
    assert etree.fromstring(raw.xml) is not None  # self-contained


def test_waypoints_are_all_or_none() -> None:
    parsed = diagram(
        '<bpmndi:BPMNEdge id="e" bpmnElement="f"><di:waypoint x="1" y="2"/>'
        '<di:waypoint x="3" y="4" v:bend="yes"/></bpmndi:BPMNEdge>'
    )
    assert parsed.di["e"].waypoints is None
    assert len(parsed.raw) == 2


def test_after_vendor_xml_the_children_are_ordered() -> None:
    parsed = diagram(
        '<bpmndi:BPMNShape id="s" bpmnElement="t"><v:first/><dc:Bounds x="1" y="2" width="3" '
        'height="4"/></bpmndi:BPMNShape>'
    )
    assert parsed.di["s"].bounds is None
    first, bounds = sorted(parsed.raw.values(), key=lambda raw: raw.order)
    assert "v:first" in first.xml and "dc:Bounds" in bounds.xml


# --- raw ------------------------------------------------------------------------------------


def test_raw_entries() -> None:
    parsed = model(
        '<bpmn:import namespace="urn:i" location="x.xsd" importType="urn:xsd"/>'
        '<bpmn:process id="p"><bpmn:task id="a"/><v:note>keep me</v:note><bpmn:task id="b"/>'
        "</bpmn:process><v:top/>"
    )
    assert set(parsed.raw) == {"/0", "/1", "p/0"}
    imported, top, note = parsed.raw["/0"], parsed.raw["/1"], parsed.raw["p/0"]
    assert (imported.parent, imported.slot) == ("", "")
    assert imported.xml.startswith("<bpmn:import ")
    assert (note.parent, note.slot) == ("p", "elements")
    assert note.xml == '<v:note xmlns:v="urn:vendor">keep me</v:note>'
    assert imported.order < parsed.elements["p"].order < top.order
    assert parsed.elements["a"].order < note.order < parsed.elements["b"].order


def test_unqualified_vendor_xml_stays_unqualified() -> None:
    parsed = parse(
        f'<definitions xmlns="{BPMN}" id="d"><process id="p"><task id="t"/>'
        '<note xmlns="">n</note></process></definitions>'.encode()
    )
    (raw,) = parsed.raw.values()
    assert raw.xml == '<note xmlns="">n</note>'
    assert b'<note xmlns="">n</note>' in render(parsed)


# --- warnings -------------------------------------------------------------------------------


def test_dangling_references_are_warnings() -> None:
    parsed = model(
        '<bpmn:process id="p"><bpmn:laneSet id="ls"><bpmn:lane id="l">'
        "<bpmn:flowNodeRef>gone</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>"
        '<bpmn:task id="t"/>\n<bpmn:sequenceFlow id="f" sourceRef="t" targetRef="nowhere"/>'
        '<bpmn:boundaryEvent id="b" attachedToRef="t"/></bpmn:process>'
        '<bpmndi:BPMNDiagram id="d"><bpmndi:BPMNPlane id="pl" bpmnElement="p">'
        '<bpmndi:BPMNShape id="s" bpmnElement="ghost"/></bpmndi:BPMNPlane></bpmndi:BPMNDiagram>'
    )
    dangling = [(w.id, w.line) for w in parsed.warnings if w.code == DANGLING_REFERENCE]
    assert dangling == [("l", 1), ("f", 2), ("s", 2)]


def test_children_out_of_xsd_order_are_a_warning() -> None:
    parsed = model(
        '<bpmn:process id="p"><bpmn:task id="t"><bpmn:extensionElements/>'
        "<bpmn:documentation>late</bpmn:documentation></bpmn:task></bpmn:process>"
    )
    assert codes(parsed) == [CHILD_ORDER]
    assert parsed.warnings[0].id == "t"


def test_comments_between_model_elements_are_not_kept() -> None:
    parsed = model("<!-- c --><bpmn:process id='p'><!-- d --><?pi x?></bpmn:process>")
    assert set(parsed.elements) == {"p"}
    assert parsed.raw == {}
