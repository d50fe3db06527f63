"""The SVG thumbnail: well-formed, one element per drawn shape and edge, fit into the box."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from bpmn.model import BpmnModel, DiEntry, Element
from bpmn.parse import parse
from bpmn.thumbnail import thumbnail_svg
from tests.samples import reference_files

SVG = "{http://www.w3.org/2000/svg}"


def svg_root(data: bytes) -> etree._Element:
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == f"{SVG}svg"
    return root


def of_class(root: etree._Element, name: str) -> list[etree._Element]:
    return [node for node in root.iter() if node.get("class") == name]


def first_plane(model: BpmnModel) -> str:
    def children(parent: str, local: str) -> list[str]:
        found = [
            (entry.order, key)
            for key, entry in model.di.items()
            if entry.parent == parent and entry.type.rpartition(":")[2] == local
        ]
        return [key for _, key in sorted(found)]

    for diagram in children("", "BPMNDiagram"):
        planes = children(diagram, "BPMNPlane")
        if planes:
            return planes[0]
    raise AssertionError("no plane")


def size_of(root: etree._Element) -> tuple[int, int]:
    return int(root.get("width", "0")), int(root.get("height", "0"))


@pytest.mark.parametrize("path", reference_files(), ids=lambda path: path.name)
def test_reference_file(path: Path) -> None:
    model = parse(path.read_bytes())
    data = thumbnail_svg(model)
    root = svg_root(data)
    plane = first_plane(model)
    entries = [entry for entry in model.di.values() if entry.parent == plane]
    shapes = [e for e in entries if e.type.endswith("BPMNShape") and e.bounds is not None]
    edges = [e for e in entries if e.type.endswith("BPMNEdge") and len(e.waypoints or []) >= 2]
    assert shapes or edges
    drawn_shapes = of_class(root, "shape")
    drawn_edges = of_class(root, "edge")
    assert len(drawn_shapes) == len(shapes)
    assert len(drawn_edges) == len(edges)
    assert sorted(node.get("data-element", "") for node in drawn_shapes) == sorted(
        entry.element or "" for entry in shapes
    )
    width, height = size_of(root)
    assert 1 <= width <= 480
    assert 1 <= height <= 320
    assert width == 480 or height == 320  # scaled to fit, not just under the limit
    assert thumbnail_svg(model) == data  # deterministic


def test_reference_files_exist() -> None:
    assert len(reference_files()) == 21


def test_fits_a_smaller_box() -> None:
    model = parse(reference_files()[0].read_bytes())
    width, height = size_of(svg_root(thumbnail_svg(model, max_width=64, max_height=48)))
    assert 1 <= width <= 64
    assert 1 <= height <= 48
    width, height = size_of(svg_root(thumbnail_svg(model, max_width=0, max_height=-5)))
    assert (width, height) == (1, 1)


def test_no_di_gives_an_empty_svg() -> None:
    model = BpmnModel("bpmn:definitions", {"id": "Defs"}, [])
    model.elements = {"Process_1": Element("bpmn:process", "", "V")}
    root = svg_root(thumbnail_svg(model))
    assert of_class(root, "shape") == []
    assert of_class(root, "edge") == []
    assert size_of(root) == (480, 320)


def diagram(*entries: tuple[str, DiEntry], elements: dict[str, Element]) -> BpmnModel:
    model = BpmnModel("bpmn:definitions", {"id": "Defs"}, [])
    model.elements = elements
    model.di = {
        "Diagram": DiEntry("bpmndi:BPMNDiagram", "", "V"),
        "Plane": DiEntry("bpmndi:BPMNPlane", "Diagram", "V", element="Process_1"),
        **dict(entries),
    }
    return model


def test_names_are_escaped_and_truncated() -> None:
    tricky = '<b>&"x"\x00'
    long = "A very long task name that goes on and on and on"
    model = diagram(
        ("S1", DiEntry("bpmndi:BPMNShape", "Plane", "V", "Task_1", bounds=[0, 0, 100, 80])),
        ("S2", DiEntry("bpmndi:BPMNShape", "Plane", "k", "Task_2", bounds=[200, 0, 100, 80])),
        elements={
            "Process_1": Element("bpmn:process", "", "V"),
            "Task_1": Element("bpmn:task", "Process_1", "V", {"name": tricky}),
            "Task_2": Element("bpmn:userTask", "Process_1", "k", {"name": long}),
        },
    )
    root = svg_root(thumbnail_svg(model))
    texts = [node.text for node in root.iter(f"{SVG}text")]
    assert texts[0] == '<b>&"x"'
    assert texts[1] is not None
    assert len(texts[1]) <= 30
    assert texts[1].endswith("\u2026")


def test_shapes_by_element_type() -> None:
    model = diagram(
        ("P", DiEntry("bpmndi:BPMNShape", "Plane", "0", "Pool", bounds=[0, 0, 600, 300])),
        ("T", DiEntry("bpmndi:BPMNShape", "Plane", "1", "ns:Task_1", bounds=[50, 50, 100, 80])),
        ("E", DiEntry("bpmndi:BPMNShape", "Plane", "2", "End", bounds=[200, 70, 36, 36])),
        ("I", DiEntry("bpmndi:BPMNShape", "Plane", "3", "Catch", bounds=[300, 70, 36, 36])),
        ("G", DiEntry("bpmndi:BPMNShape", "Plane", "4", "Gw", bounds=[400, 70, 50, 50])),
        ("X", DiEntry("bpmndi:BPMNShape", "Plane", "5", "Missing", bounds=[500, 70, 20, 20])),
        ("N", DiEntry("bpmndi:BPMNShape", "Plane", "6", "Task_1")),  # no bounds: skipped
        ("B", DiEntry("bpmndi:BPMNShape", "Plane", "7", "Task_1", bounds=[1, 2])),  # bad
        ("F", DiEntry("bpmndi:BPMNEdge", "Plane", "8", "Flow", waypoints=[[150, 90], [200, 88]])),
        ("M", DiEntry("bpmndi:BPMNEdge", "Plane", "9", "Msg", waypoints=[[0, 0], [9, 9]])),
        ("Z", DiEntry("bpmndi:BPMNEdge", "Plane", "A", "Flow", waypoints=[[1, 1]])),  # skipped
        ("W", DiEntry("bpmndi:BPMNShape", "Other", "V", "Task_1", bounds=[0, 0, 9, 9])),
        elements={
            "Process_1": Element("bpmn:process", "", "V"),
            "Pool": Element("bpmn:participant", "Collab", "V"),
            "Task_1": Element("bpmn:task", "Process_1", "V", {"name": "Do it"}),
            "End": Element("bpmn:endEvent", "Process_1", "k"),
            "Catch": Element("bpmn:intermediateCatchEvent", "Process_1", "k"),
            "Gw": Element("bpmn:exclusiveGateway", "Process_1", "k"),
            "Flow": Element("bpmn:sequenceFlow", "Process_1", "k"),
            "Msg": Element("bpmn:messageFlow", "Collab", "k"),
        },
    )
    root = svg_root(thumbnail_svg(model))
    shapes = {node.get("data-element"): node for node in of_class(root, "shape")}
    assert list(shapes) == ["Pool", "ns:Task_1", "End", "Catch", "Gw", "Missing"]
    assert shapes["Pool"].tag == f"{SVG}rect"
    assert shapes["Pool"].get("fill") is None  # inherits fill="none"
    assert shapes["ns:Task_1"].find(f"{SVG}rect") is not None
    assert shapes["ns:Task_1"].find(f"{SVG}rect").get("rx") is not None  # type: ignore[union-attr]
    assert shapes["End"].tag == f"{SVG}circle"
    assert shapes["End"].get("stroke-width") is not None
    assert len(shapes["Catch"].findall(f"{SVG}circle")) == 2
    assert shapes["Gw"].tag == f"{SVG}polygon"
    assert shapes["Missing"].tag == f"{SVG}rect"
    edges = {node.get("data-element"): node for node in of_class(root, "edge")}
    assert list(edges) == ["Flow", "Msg"]
    assert edges["Flow"].get("marker-end") is not None
    assert edges["Flow"].get("stroke-dasharray") is None
    assert edges["Msg"].get("stroke-dasharray") is not None


def test_odd_geometry_does_not_raise() -> None:
    model = diagram(
        ("S1", DiEntry("bpmndi:BPMNShape", "Plane", "V", None, bounds=[10, 10, -5, -5])),
        ("S2", DiEntry("bpmndi:BPMNShape", "Plane", "k", "X", bounds=[0, 0, 0, 0])),
        ("S3", DiEntry("bpmndi:BPMNShape", "Plane", "m", "Y", bounds=[1e308, 1e308, 1e308, 1])),
        (
            "E1",
            DiEntry(
                "bpmndi:BPMNEdge",
                "Plane",
                "n",
                "<&>",
                waypoints=[[0, 0], [float("nan"), 1], [5, 5]],
            ),
        ),
        elements={},
    )
    root = svg_root(thumbnail_svg(model))
    assert len(of_class(root, "shape")) == 2  # the overflowing one is skipped
    assert [node.get("data-element") for node in of_class(root, "edge")] == ["<&>"]
