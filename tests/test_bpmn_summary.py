"""The diagram summary: counted from the model, the same from a Doc as from the model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from bpmn.document import load, root_maps
from bpmn.inspect import inspect_bpmn
from bpmn.model import BpmnModel, Element
from bpmn.summary import DocSummary, summary
from tests.samples import reference_files
from tests.test_bpmn_document import full_model


def collaboration() -> BpmnModel:
    model = BpmnModel("bpmn:definitions", {"id": "Defs"}, [])
    model.elements = {
        # Listed out of document order on purpose: titles follow the order keys.
        "Process_B": Element("bpmn:process", "", "k", {"name": "Shipping"}),
        "Collab": Element("bpmn:collaboration", "", "F"),
        "Part_A": Element("bpmn:participant", "Collab", "V", {"name": "Customer"}),
        "Part_B": Element("bpmn:participant", "Collab", "k", {"name": "Shipping"}),
        "Process_A": Element("process", "", "V", {"name": "  "}),
        "~Process_A/laneSet#0": Element("bpmn:laneSet", "Process_A", "V", anon=True),
        "Task_1": Element("bpmn:task", "Process_A", "k", {"name": "Order"}),
        "Task_2": Element("semantic:task", "Process_B", "V"),
    }
    return model


def test_counts_titles_and_types() -> None:
    assert summary(collaboration()) == DocSummary(
        element_count=7,
        titles=("Customer", "Shipping"),
        types={"collaboration": 1, "participant": 2, "process": 2, "task": 2},
    )


def test_fragments_with_an_id_count_as_the_xml_gate_counts_them() -> None:
    model = collaboration()
    task = model.elements["Task_1"]
    task.body["bpmn:documentation#0"] = (
        '<bpmn:documentation a=">" id="Doc_1">x</bpmn:documentation>'
    )
    task.body["bpmn:documentation#1"] = (
        '<bpmn:documentation textFormat="t"><x id="no"/></bpmn:documentation>'
    )
    task.ext = "<bpmn:extensionElements id='Ext_1'/>"
    task.text["bpmn:documentation#2"] = 'id="not markup"'
    result = summary(model)
    assert result.element_count == 9 == sum(result.types.values())
    assert result.types["documentation"] == result.types["extensionElements"] == 1


def test_a_doc_and_its_model_summarise_alike() -> None:
    for model in (collaboration(), full_model()):
        assert summary(load(model)) == summary(model)


def test_an_empty_or_broken_document_still_summarises() -> None:
    assert summary(BpmnModel("", {}, [])) == DocSummary(0, (), {})
    doc = load(collaboration())
    elements = root_maps(doc)[1]
    elements["Part_A"]["parent"] = "Part_A"  # a cycle a client made
    elements["junk"] = 5
    assert summary(doc).element_count == 7


def test_the_summary_is_immutable() -> None:
    result = summary(collaboration())
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.element_count = 1  # type: ignore[misc]


@pytest.mark.parametrize("path", reference_files(), ids=lambda path: path.name)
def test_element_count_matches_the_xml_gate(path: Path) -> None:
    parse: Callable[[bytes], BpmnModel] = pytest.importorskip("bpmn.parse").parse
    xml = path.read_bytes()
    info = inspect_bpmn(xml, max_bytes=10**8, max_depth=1000, max_elements=10**6)
    assert summary(parse(xml)).element_count == info.element_count
