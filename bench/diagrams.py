"""Synthetic BPMN diagrams of a chosen size, for benchmarks and tests."""

from __future__ import annotations

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" '
    'xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" '
    'xmlns:di="http://www.omg.org/spec/DD/20100524/DI" '
    'id="Definitions_big" targetNamespace="http://bpmn.io/schema/bpmn">\n'
    '<bpmn:process id="Process_big" isExecutable="false">\n'
)


def _task(index: int) -> str:
    return (
        f'<bpmn:task id="Task_{index}" name="Step number {index} of a very long process">'
        f"<bpmn:documentation>Task {index}: check, approve and archive.</bpmn:documentation>"
        "</bpmn:task>\n"
    )


def _flow(index: int) -> str:
    return (
        f'<bpmn:sequenceFlow id="Flow_{index}" sourceRef="Task_{index}" '
        f'targetRef="Task_{index + 1}" />\n'
    )


def _shape(index: int) -> str:
    x, y = (index % 100) * 150, (index // 100) * 120
    return (
        f'<bpmndi:BPMNShape id="Task_{index}_di" bpmnElement="Task_{index}">'
        f'<dc:Bounds x="{x}" y="{y}" width="100" height="80" /></bpmndi:BPMNShape>\n'
    )


def _edge(index: int) -> str:
    x, y = (index % 100) * 150, (index // 100) * 120
    return (
        f'<bpmndi:BPMNEdge id="Flow_{index}_di" bpmnElement="Flow_{index}">'
        f'<di:waypoint x="{x + 100}" y="{y + 40}" /><di:waypoint x="{x + 150}" y="{y + 40}" />'
        "</bpmndi:BPMNEdge>\n"
    )


def chain_diagram(tasks: int) -> bytes:
    """A process of ``tasks`` tasks joined by sequence flows, with shapes and edges:
    about ``2 * tasks`` BPMN elements."""
    semantic = [_task(i) for i in range(tasks)] + [_flow(i) for i in range(tasks - 1)]
    drawing = [_shape(i) for i in range(tasks)] + [_edge(i) for i in range(tasks - 1)]
    return _assemble(semantic, drawing)


def diagram_of_size(min_bytes: int) -> bytes:
    """A valid diagram of at least ``min_bytes`` (tasks with shapes, no flows)."""
    semantic: list[str] = []
    drawing: list[str] = []
    size = len(_HEAD)
    while size < min_bytes:
        index = len(semantic)
        semantic.append(_task(index))
        drawing.append(_shape(index))
        size += len(semantic[-1]) + len(drawing[-1])
    return _assemble(semantic, drawing)


def _assemble(semantic: list[str], drawing: list[str]) -> bytes:
    return (
        _HEAD
        + "".join(semantic)
        + "</bpmn:process>\n"
        + '<bpmndi:BPMNDiagram id="Diagram_big"><bpmndi:BPMNPlane id="Plane_big" '
        'bpmnElement="Process_big">\n'
        + "".join(drawing)
        + "</bpmndi:BPMNPlane></bpmndi:BPMNDiagram>\n</bpmn:definitions>\n"
    ).encode()
