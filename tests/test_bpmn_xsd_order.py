"""The XSD child order: generated from the OMG schema, and what it says about familiar types."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bpmn.xsd_order import UNKNOWN_RANK, child_rank, has_child, type_of
from tests.samples import CORPUS

ROOT = Path(__file__).resolve().parents[1]
XSD_DIR = CORPUS / "xsd"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_xsd_order", ROOT / "scripts/gen_xsd_order.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_xsd_order", module)
    spec.loader.exec_module(module)
    return module


def test_the_generated_module_is_up_to_date(tmp_path: Path) -> None:
    if not (XSD_DIR / "Semantic.xsd").is_file():
        pytest.skip(f"no XSDs in {XSD_DIR}")
    output = tmp_path / "xsd_sequences.py"
    assert generator().main(["gen_xsd_order.py", str(XSD_DIR), str(output)]) == 0
    committed = (ROOT / "bpmn" / "xsd_sequences.py").read_text(encoding="utf-8")
    assert output.read_text(encoding="utf-8") == committed, (
        "bpmn/xsd_sequences.py is stale: run .venv/bin/python scripts/gen_xsd_order.py"
    )


def test_base_element_children_come_first() -> None:
    for parent in ("task", "process", "sequenceFlow", "lane", "timerEventDefinition"):
        assert child_rank(parent, "documentation") == 0
        assert child_rank(parent, "extensionElements") == 1


def test_inherited_sequences_follow_the_base_types() -> None:
    # tTask < tActivity < tFlowNode < tFlowElement < tBaseElement
    ranks = [
        child_rank("userTask", name)
        for name in (
            "extensionElements",
            "categoryValueRef",
            "incoming",
            "outgoing",
            "ioSpecification",
            "property",
            "dataInputAssociation",
            "dataOutputAssociation",
            "potentialOwner",
            "multiInstanceLoopCharacteristics",
            "rendering",
        )
    ]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_substitution_group_members_share_a_rank() -> None:
    flow_elements = {
        child_rank("process", name)
        for name in (
            "task",
            "sequenceFlow",
            "startEvent",
            "subProcess",
            "dataObject",
            "flowElement",
        )
    }
    assert len(flow_elements) == 1
    root_elements = {
        child_rank("definitions", name)
        for name in ("process", "collaboration", "message", "timerEventDefinition", "dataStore")
    }
    assert len(root_elements) == 1
    assert child_rank("definitions", "import") < child_rank("definitions", "process")
    assert child_rank("definitions", "process") < child_rank("definitions", "BPMNDiagram")
    assert child_rank("definitions", "BPMNDiagram") < child_rank("definitions", "relationship")
    assert child_rank("startEvent", "timerEventDefinition") == child_rank(
        "startEvent", "messageEventDefinition"
    )
    assert child_rank("process", "laneSet") < child_rank("process", "task")
    assert child_rank("process", "task") < child_rank("process", "textAnnotation")


def test_diagram_interchange_order() -> None:
    assert child_rank("BPMNShape", "extension") < child_rank("BPMNShape", "Bounds")
    assert child_rank("BPMNShape", "Bounds") < child_rank("BPMNShape", "BPMNLabel")
    assert child_rank("BPMNEdge", "waypoint") < child_rank("BPMNEdge", "BPMNLabel")
    assert child_rank("BPMNPlane", "BPMNShape") == child_rank("BPMNPlane", "BPMNEdge")
    assert child_rank("BPMNDiagram", "BPMNPlane") < child_rank("BPMNDiagram", "BPMNLabelStyle")


def test_local_elements_have_their_types() -> None:
    assert type_of("childLaneSet") == "tLaneSet"
    assert child_rank("childLaneSet", "lane") == child_rank("laneSet", "lane")
    assert type_of("conditionExpression") == "tExpression"


def test_unknown_children_and_parents_go_last() -> None:
    assert child_rank("task", "vendorThing") == UNKNOWN_RANK
    assert child_rank("vendorParent", "task") == UNKNOWN_RANK
    assert not has_child("task", "vendorThing")
    assert has_child("task", "incoming")
    assert not has_child("process", "incoming")
