"""BPMN inspection: the MIWG corpus, refusals, duplicate ids and the starter diagram."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from bpmn.inspect import BPMN_NS, BPMNDI_NS, DC_NS, DI_NS, BpmnInfo, inspect_bpmn, minimal_bpmn
from core.errors import (
    DuplicateId,
    InvalidInput,
    NotBpmn,
    XmlForbidden,
    XmlLimitExceeded,
    XmlMalformed,
    XmlTooLarge,
)

LIMITS: dict[str, int] = {"max_bytes": 32 * 1024 * 1024, "max_depth": 256, "max_elements": 500_000}
DOCUMENTED = (XmlTooLarge, XmlMalformed, XmlForbidden, XmlLimitExceeded, NotBpmn, DuplicateId)

CORPUS = Path(
    os.environ.get("BPMN_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)
MIWG = CORPUS / "miwg"
ALL_FILES = sorted(MIWG.glob("**/*.bpmn"))
REFERENCE_FILES = sorted((MIWG / "reference").glob("*.bpmn"))


def name(path: Path) -> str:
    return path.relative_to(MIWG).as_posix()


def inspect(xml: bytes, **overrides: int) -> BpmnInfo:
    return inspect_bpmn(xml, **(LIMITS | overrides))


def verdict(xml: bytes) -> str | None:
    """The error code inspect_bpmn gives, or None when it accepts the document."""
    try:
        inspect(xml)
    except DOCUMENTED as exc:  # anything else escapes and fails the test
        return exc.code
    return None


# --- the independent check ------------------------------------------------------------------
# Written without bpmn.inspect's code: one plain lxml parse with its default safe options and
# XPath over the whole tree, where inspect_bpmn streams, counts and walks.

NS = {"bpmn": BPMN_NS, "bpmndi": BPMNDI_NS, "ddi": DI_NS}
OUTSIDE_OPEN_CONTENT = (
    "not(ancestor::bpmn:extensionElements or ancestor::bpmn:documentation"
    " or ancestor::bpmn:script or ancestor::bpmn:text or ancestor::ddi:extension)"
)
ID_VALUES = etree.XPath(
    f"//*[namespace-uri() = '{BPMN_NS}' or namespace-uri() = '{BPMNDI_NS}']"
    f"[@id][{OUTSIDE_OPEN_CONTENT}]/@id",
    namespaces=NS,
)
MODEL_ELEMENTS = etree.XPath(
    f"count(//bpmn:*[@id][parent::*][{OUTSIDE_OPEN_CONTENT}])", namespaces=NS
)
PROCESS_IDS = etree.XPath("/bpmn:definitions/bpmn:process/@id", namespaces=NS)


def independent_parse(xml: bytes) -> etree._Element | None:
    try:
        return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None


def independent_verdict(xml: bytes) -> str | None:
    root = independent_parse(xml)
    if root is None:
        return XmlMalformed.code
    if root.getroottree().docinfo.internalDTD is not None:
        return XmlForbidden.code
    if root.tag != f"{{{BPMN_NS}}}definitions":
        return NotBpmn.code
    ids = [str(value) for value in ID_VALUES(root)]  # type: ignore[union-attr]
    if len(ids) != len(set(ids)):
        return DuplicateId.code
    return None


def lxml_refuses_namespace_uris_with_spaces() -> bool:
    # libxml2 2.14 made this an error; earlier releases only warn.
    return independent_parse(b'<a xmlns:p="http://x/a b"/>') is None


# What the corpus README calls "a handful": files a server must refuse.
KNOWN_REFUSED = {
    # Declared UTF-8, written in Latin-1 (German umlauts).
    "genmymodel-0.47/C.1.0-export.bpmn": XmlMalformed.code,
    "genmymodel-0.47/C.1.0-roundtrip.bpmn": XmlMalformed.code,
    "genmymodel-0.47/C.1.1-export.bpmn": XmlMalformed.code,
    "genmymodel-0.47/C.1.1-roundtrip.bpmn": XmlMalformed.code,
    # Two sequenceFlows share an id.
    "igrafx-flowcharter-2013-15.1.1.1580/B.2.0-export.bpmn": DuplicateId.code,
    # Two laneSets with id "laneSet_".
    "modelfoundry-1.1.1/A.4.1-roundtrip.bpmn": DuplicateId.code,
    "modelfoundry-1.1.1/C.1.0-roundtrip.bpmn": DuplicateId.code,
    # Three BPMNShapes share an id.
    "trisotech-bpmn-visio-add-in-5.0.1/C.1.1-export.bpmn": DuplicateId.code,
}
if lxml_refuses_namespace_uris_with_spaces():
    KNOWN_REFUSED |= {
        # xmlns:Process="http://.../Collapsed Process": a space in a namespace URI.
        "ibm-process-designer-8.0.1/A.3.0-export.bpmn": XmlMalformed.code,
        "ibm-process-designer-8.0.1/A.3.0-roundtrip.bpmn": XmlMalformed.code,
    }


# --- the corpus -----------------------------------------------------------------------------


def test_corpus_is_present() -> None:
    if not MIWG.is_dir():
        pytest.skip(f"no BPMN corpus at {MIWG}; set BPMN_CORPUS to the corpus folder")
    assert len(REFERENCE_FILES) >= 20
    assert len(ALL_FILES) >= 400


@pytest.mark.parametrize("path", REFERENCE_FILES, ids=name)
def test_reference_model_passes(path: Path) -> None:
    xml = path.read_bytes()
    info = inspect(xml)
    root = independent_parse(xml)
    assert root is not None
    assert info.element_count > 0
    assert info.element_count == int(MODEL_ELEMENTS(root))  # type: ignore[arg-type]
    assert info.process_ids == tuple(str(v) for v in PROCESS_IDS(root))  # type: ignore[union-attr]
    assert info.process_ids
    assert info.target_namespace == root.get("targetNamespace")
    assert info.ids == {str(v) for v in ID_VALUES(root)}  # type: ignore[union-attr]


def test_reference_model_summary() -> None:
    path = MIWG / "reference" / "A.1.0.bpmn"
    if not path.is_file():
        pytest.skip(f"no {path}")
    info = inspect(path.read_bytes())
    assert info.element_count == 10
    assert info.process_ids == ("WFP-6-",)
    assert info.target_namespace == "http://www.trisotech.com/definitions/_1373649849716"


@pytest.mark.parametrize("path", ALL_FILES, ids=name)
def test_corpus_file_verdict_matches_the_independent_check(path: Path) -> None:
    xml = path.read_bytes()
    assert verdict(xml) == independent_verdict(xml)


def test_corpus_refusals_are_the_known_handful() -> None:
    if not ALL_FILES:
        pytest.skip(f"no BPMN corpus at {MIWG}")
    refused = {name(path): code for path in ALL_FILES if (code := verdict(path.read_bytes()))}
    assert refused == KNOWN_REFUSED
    assert not any(key.startswith("reference/") for key in refused)


def test_vendor_content_in_the_bpmn_namespace_is_not_a_duplicate() -> None:
    # Visual Paradigm nests <Model id> under extensionElements in the default (BPMN)
    # namespace, repeating ids of real elements; the schema leaves that content open.
    path = MIWG / "visual-paradigm-11.1" / "A.3.0-roundtrip.bpmn"
    if not path.is_file():
        pytest.skip(f"no {path}")
    xml = path.read_bytes()
    root = independent_parse(xml)
    assert root is not None
    everywhere = root.xpath("//bpmn:*/@id", namespaces=NS)
    assert isinstance(everywhere, list)
    assert len(everywhere) > len(set(everywhere))
    inspect(xml)


# --- not BPMN -------------------------------------------------------------------------------

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect id="r"/></svg>'
DI_ONLY = (
    f'<bpmndi:BPMNDiagram xmlns:bpmndi="{BPMNDI_NS}" id="d">'
    f'<bpmndi:BPMNPlane id="p" bpmnElement="x"/></bpmndi:BPMNDiagram>'
).encode()


@pytest.mark.parametrize(
    ("xml", "root"),
    [
        (SVG, "{http://www.w3.org/2000/svg}svg"),
        (DI_ONLY, f"{{{BPMNDI_NS}}}BPMNDiagram"),
        (b'<definitions id="d"><process id="p"/></definitions>', "definitions"),
        (f'<process xmlns="{BPMN_NS}" id="p"/>'.encode(), f"{{{BPMN_NS}}}process"),
        (
            b'<definitions xmlns="http://www.omg.org/spec/BPMN/20100501/MODEL"/>',
            "{http://www.omg.org/spec/BPMN/20100501/MODEL}definitions",
        ),
    ],
    ids=["svg", "bpmndi-only", "no-namespace", "process-root", "other-namespace"],
)
def test_other_roots_are_not_bpmn(xml: bytes, root: str) -> None:
    with pytest.raises(NotBpmn) as caught:
        inspect(xml)
    assert root in caught.value.detail
    assert caught.value.fields == {"root": root}


def test_the_xml_gate_runs_first() -> None:
    with pytest.raises(XmlForbidden):
        inspect(b"<!DOCTYPE svg><svg/>")
    with pytest.raises(XmlTooLarge):
        inspect(SVG, max_bytes=10)
    with pytest.raises(XmlLimitExceeded):
        inspect(minimal_bpmn(), max_elements=3)
    with pytest.raises(XmlMalformed):
        inspect(minimal_bpmn()[:-30])


# --- duplicate ids --------------------------------------------------------------------------


def definitions(body: str) -> bytes:
    return (
        f'<bpmn:definitions xmlns:bpmn="{BPMN_NS}" xmlns:bpmndi="{BPMNDI_NS}" '
        f'xmlns:dc="{DC_NS}" xmlns:di="{DI_NS}" xmlns:v="urn:vendor" id="defs" '
        f'targetNamespace="urn:t">{body}</bpmn:definitions>'
    ).encode()


def test_duplicate_model_ids_are_refused() -> None:
    xml = definitions('<bpmn:process id="p"><bpmn:task id="t"/><bpmn:task id="t"/></bpmn:process>')
    with pytest.raises(DuplicateId) as caught:
        inspect(xml)
    assert caught.value.code == "duplicate_id"
    assert caught.value.ids == ["t"]
    assert caught.value.fields == {"ids": ["t"], "total": 1}
    assert "'t'" in caught.value.detail


def test_a_shape_may_not_reuse_a_model_id() -> None:
    xml = definitions(
        '<bpmn:process id="p"><bpmn:startEvent id="s"/></bpmn:process>'
        '<bpmndi:BPMNDiagram id="d"><bpmndi:BPMNPlane id="pl" bpmnElement="p">'
        '<bpmndi:BPMNShape id="s" bpmnElement="s"/></bpmndi:BPMNPlane></bpmndi:BPMNDiagram>'
    )
    with pytest.raises(DuplicateId) as caught:
        inspect(xml)
    assert caught.value.ids == ["s"]


def test_the_root_id_counts_for_duplicates() -> None:
    with pytest.raises(DuplicateId) as caught:
        inspect(definitions('<bpmn:process id="defs"/>'))
    assert caught.value.ids == ["defs"]


def test_many_duplicates_are_summarised() -> None:
    tasks = "".join(f'<bpmn:task id="t{i}"/><bpmn:task id="t{i}"/>' for i in range(8))
    with pytest.raises(DuplicateId) as caught:
        inspect(definitions(f'<bpmn:process id="p">{tasks}</bpmn:process>'))
    assert caught.value.ids == ["t0", "t1", "t2", "t3", "t4"]
    assert caught.value.total == 8
    assert "and 3 more" in caught.value.detail


def test_ids_outside_the_model_do_not_count() -> None:
    xml = definitions(
        '<bpmn:process id="p">'
        '<bpmn:extensionElements><v:x id="p"/><bpmn:Model id="t"/></bpmn:extensionElements>'
        '<bpmn:documentation id="doc">see <bpmn:task id="t"/></bpmn:documentation>'
        '<bpmn:task id="t"><v:y id="t"/></bpmn:task>'
        "</bpmn:process>"
        '<bpmndi:BPMNDiagram id="d"><bpmndi:BPMNPlane id="pl" bpmnElement="p">'
        '<bpmndi:BPMNShape id="sh" bpmnElement="t"><di:extension><bpmndi:BPMNLabel id="sh"/>'
        '</di:extension><dc:Bounds id="t" x="1" y="1" width="1" height="1"/></bpmndi:BPMNShape>'
        "</bpmndi:BPMNPlane></bpmndi:BPMNDiagram>"
    )
    info = inspect(xml)
    # process, documentation, task; not definitions, vendor, DI or open content.
    assert info.element_count == 3
    assert info.ids == {"defs", "p", "doc", "t", "d", "pl", "sh"}


# --- the summary ----------------------------------------------------------------------------


def test_summary_fields() -> None:
    xml = definitions(
        '<bpmn:process id="p1"><bpmn:task/><bpmn:task id="t"/></bpmn:process>'
        '<bpmn:collaboration id="c"/><bpmn:process/><bpmn:process id="p2"/>'
    )
    info = inspect(xml)
    assert info == BpmnInfo(
        element_count=4,
        process_ids=("p1", "p2"),
        target_namespace="urn:t",
        ids=frozenset({"defs", "p1", "t", "c", "p2"}),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.element_count = 0  # type: ignore[misc]


def test_target_namespace_may_be_missing() -> None:
    info = inspect(f'<definitions xmlns="{BPMN_NS}"><process id="p"/></definitions>'.encode())
    assert info.target_namespace is None
    assert info.element_count == 1


# --- the starter diagram --------------------------------------------------------------------

NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")


def test_minimal_bpmn_passes_inspection() -> None:
    info = inspect(minimal_bpmn())
    assert info.element_count == 2
    assert len(info.process_ids) == 1
    assert info.target_namespace
    assert all(NCNAME.match(element_id) for element_id in info.ids)


def test_minimal_bpmn_draws_its_start_event() -> None:
    root = etree.fromstring(minimal_bpmn())
    assert root.nsmap == {"bpmn": BPMN_NS, "bpmndi": BPMNDI_NS, "dc": DC_NS, "di": DI_NS}
    (start,) = root.iterfind("bpmn:process/bpmn:startEvent", NS)
    (shape,) = root.iterfind("bpmndi:BPMNDiagram/bpmndi:BPMNPlane/bpmndi:BPMNShape", NS)
    (process,) = root.iterfind("bpmn:process", NS)
    (plane,) = root.iterfind("bpmndi:BPMNDiagram/bpmndi:BPMNPlane", NS)
    assert start.get("id", "").startswith("StartEvent_")
    assert shape.get("bpmnElement") == start.get("id")
    assert plane.get("bpmnElement") == process.get("id")
    bounds = shape.find(f"{{{DC_NS}}}Bounds")
    assert bounds is not None
    assert {key: bounds.get(key) for key in ("width", "height")} == {"width": "36", "height": "36"}


def test_minimal_bpmn_ids_differ_between_diagrams() -> None:
    first, second = inspect(minimal_bpmn()), inspect(minimal_bpmn())
    assert first.ids.isdisjoint(second.ids)


def test_minimal_bpmn_is_valid_against_the_omg_schema() -> None:
    xsd = CORPUS / "xsd" / "BPMN20.xsd"
    if not xsd.is_file():
        pytest.skip(f"no {xsd}")
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    assert schema.validate(etree.fromstring(minimal_bpmn("Order"))), schema.error_log


@pytest.mark.parametrize("process_name", ["Order", 'Bestellung <&> "prüfen"', ""])
def test_minimal_bpmn_carries_the_process_name(process_name: str) -> None:
    root = etree.fromstring(minimal_bpmn(process_name))
    process = root.find("bpmn:process", NS)
    assert process is not None
    assert process.get("name") == process_name


def test_minimal_bpmn_without_a_name_has_no_name() -> None:
    process = etree.fromstring(minimal_bpmn()).find("bpmn:process", NS)
    assert process is not None
    assert process.get("name") is None


@pytest.mark.parametrize("process_name", ["a\x00b", "bell\x07", "half \ud800 pair"])
def test_minimal_bpmn_refuses_names_xml_cannot_carry(process_name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        minimal_bpmn(process_name)
    assert caught.value.fields == {"field": "processName"}


# --- fuzzing --------------------------------------------------------------------------------

STARTER = minimal_bpmn("Start")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(STARTER)), st.integers(0, 8), st.binary(max_size=8)),
        min_size=1,
        max_size=4,
    )
)
def test_damaged_diagrams_pass_or_raise_a_documented_error(
    edits: list[tuple[int, int, bytes]],
) -> None:
    xml = STARTER
    for at, cut, insert in edits:
        xml = xml[:at] + insert + xml[at + cut :]
    verdict(xml)
