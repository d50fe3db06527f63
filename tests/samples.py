"""Where the shared BPMN corpus is, and BPMN documents made up for tests."""

from __future__ import annotations

import os
from pathlib import Path

CORPUS = Path(
    os.environ.get("BPMN_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
MIWG = CORPUS / "miwg"
REFERENCE = MIWG / "reference"


def reference_files() -> list[Path]:
    return sorted(REFERENCE.glob("*.bpmn"))


def generated_bpmn(min_bytes: int) -> bytes:
    """A valid BPMN document of at least ``min_bytes``: one long chain of tasks with shapes."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" '
        'xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" '
        'xmlns:di="http://www.omg.org/spec/DD/20100524/DI" '
        'id="Definitions_big" targetNamespace="http://bpmn.io/schema/bpmn">\n'
        '<bpmn:process id="Process_big" isExecutable="false">\n'
    )
    tasks: list[str] = []
    shapes: list[str] = []
    size = len(head)
    index = 0
    while size < min_bytes:
        task = (
            f'<bpmn:task id="Task_{index}" name="Step number {index} of a very long process">'
            f"<bpmn:documentation>Task {index}: check, approve and archive.</bpmn:documentation>"
            "</bpmn:task>\n"
        )
        shape = (
            f'<bpmndi:BPMNShape id="Task_{index}_di" bpmnElement="Task_{index}">'
            f'<dc:Bounds x="{(index % 100) * 150}" y="{(index // 100) * 120}" '
            'width="100" height="80" /></bpmndi:BPMNShape>\n'
        )
        tasks.append(task)
        shapes.append(shape)
        size += len(task) + len(shape)
        index += 1
    return (
        head
        + "".join(tasks)
        + "</bpmn:process>\n"
        + '<bpmndi:BPMNDiagram id="Diagram_big"><bpmndi:BPMNPlane id="Plane_big" '
        'bpmnElement="Process_big">\n'
        + "".join(shapes)
        + "</bpmndi:BPMNPlane></bpmndi:BPMNDiagram>\n</bpmn:definitions>\n"
    ).encode()
