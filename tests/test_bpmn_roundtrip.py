"""Every corpus file: refused with a typed error, or parsed and rendered back to the same meaning.

"The same meaning" is :mod:`bpmn.semantic`'s canonical form, built from the lxml tree and never
through the model. The one thing render changes on purpose is leaving out shapes and edges of
elements that do not exist (10 corpus files have some); those files are compared without them,
every other file exactly.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bpmn.check import check_files
from bpmn.model import BpmnModel
from bpmn.parse import parse
from bpmn.render import render
from bpmn.repair import REPAIRED, repair
from bpmn.semantic import canonical
from core.errors import CollabError, InvalidInput
from tests.samples import CORPUS, MIWG, REFERENCE
from tests.test_bpmn_inspect import KNOWN_REFUSED

ALL_FILES = sorted(MIWG.glob("**/*.bpmn"))
XSD = CORPUS / "xsd" / "BPMN20.xsd"
# The files whose drawing has shapes or edges of elements that do not exist (exporter bugs).
WITH_DANGLING_DI = {
    "actibpm-3.e-8/A.3.0-export.bpmn",
    "adonis-17.0/C.4.0-export.bpmn",
    "adonis-17.0/C.4.0-roundtrip.bpmn",
    "igrafx-flowcharter-2013-15.1.1.1580/A.3.0-export.bpmn",
    "igrafx-flowcharter-2013-15.1.1.1580/B.2.0-roundtrip.bpmn",
    "igrafx-process-2013-for-six-sigma-15.0.4.1565/B.2.0-roundtrip.bpmn",
    "modelfoundry-1.1.1/B.1.0-roundtrip.bpmn",
    "modelfoundry-1.1.1/B.2.0-roundtrip.bpmn",
    "modelfoundry-1.1.1/C.1.1-roundtrip.bpmn",
    "modelfoundry-1.1.1/C.2.0-roundtrip.bpmn",
}


def name(path: Path) -> str:
    return path.relative_to(MIWG).as_posix()


@pytest.fixture(scope="session")
def schema() -> etree.XMLSchema:
    if not XSD.is_file():
        pytest.skip(f"no {XSD}")
    # From the file path, so that its imports of BPMNDI.xsd, DC.xsd and DI.xsd resolve.
    return etree.XMLSchema(etree.parse(str(XSD)))


def test_the_corpus_is_here() -> None:
    if not MIWG.is_dir():
        pytest.skip(f"no BPMN corpus at {MIWG}; set BPMN_CORPUS to the corpus folder")
    assert len(ALL_FILES) >= 400


@pytest.mark.parametrize("path", ALL_FILES, ids=name)
def test_corpus_file(path: Path, schema: etree.XMLSchema) -> None:
    xml = path.read_bytes()
    refused = KNOWN_REFUSED.get(name(path))
    if refused is not None:
        with pytest.raises(CollabError) as caught:
            parse(xml)
        assert caught.value.code == refused
        return
    model = parse(xml)
    rendered = render(model)
    assert rendered.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<')
    root = etree.fromstring(rendered)  # well-formed, or this raises

    dangling = name(path) in WITH_DANGLING_DI
    source = canonical(xml, drop_dangling_di=dangling)
    result = canonical(rendered, drop_dangling_di=dangling)
    assert source == result, "\n".join(source.differences(result))
    assert dropped_di(model) == dangling

    source_tree = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    if schema.validate(source_tree):
        assert schema.validate(root), schema.error_log

    assert render(model) == rendered
    assert render(parse(rendered)) == rendered


def dropped_di(model: BpmnModel) -> bool:
    return any(
        warning.code == REPAIRED and "does not exist" in warning.message
        for warning in repair(model).warnings
    )


# --- edited files ---------------------------------------------------------------------------

SEED = MIWG / "reference" / "A.2.0.bpmn"
SNIPPETS = [
    '<v:x xmlns:v="urn:vendor"/>',
    "<plain/>",
    "<semantic:task/>",
    '<semantic:task id="new"/>',
    "<semantic:documentation>d</semantic:documentation>",
    "<semantic:timerEventDefinition/>",
    "<semantic:extensionElements/>",
    '<dc:Bounds x="1" y="2" width="3" height="4"/>',
    '<di:waypoint x="1" y="1"/>',
    "<bpmndi:BPMNLabel/>",
    "<!-- note -->",
    "<?app data?>",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_edited_files_round_trip(data: st.DataObject) -> None:
    """Elements added anywhere (vendor XML, id-less BPMN, geometry out of place) keep their
    meaning and their place through parse and render."""
    if not SEED.is_file():
        pytest.skip(f"no {SEED}")
    xml = SEED.read_bytes()
    ends = [index + 1 for index, byte in enumerate(xml) if byte == ord(">")]
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.sampled_from(ends))
        xml = xml[:at] + data.draw(st.sampled_from(SNIPPETS)).encode() + xml[at:]
    try:
        model = parse(xml)
    except InvalidInput:
        return  # e.g. a snippet after the root, or an id used twice
    rendered = render(model)
    source = canonical(xml, drop_dangling_di=True)
    result = canonical(rendered, drop_dangling_di=True)
    assert source == result, "\n".join(source.differences(result))
    # Vendor XML moved by render (before a child out of XSD order) may let geometry that was
    # kept raw become model geometry on the next parse: bytes settle one round later.
    again = render(parse(rendered))
    assert render(parse(again)) == again


# --- bpmn-collab check ----------------------------------------------------------------------


def test_check_reports_each_file(tmp_path: Path) -> None:
    good = REFERENCE / "A.1.0.bpmn"
    dangling = MIWG / "actibpm-3.e-8" / "A.3.0-export.bpmn"
    latin1 = MIWG / "genmymodel-0.47" / "C.1.0-export.bpmn"
    if not all(path.is_file() for path in (good, dangling, latin1)):
        pytest.skip(f"no BPMN corpus at {MIWG}")
    out = io.StringIO()
    assert check_files([good, dangling], out) == 0
    report = out.getvalue()
    assert f"{good}: ok: 10 elements" in report
    assert f"{dangling}:71: warning xml-dangling-reference: " in report
    assert f"{dangling}: warning render-repaired: dropped bpmndi:BPMNShape 'Shape-_15'" in report
    assert report.endswith("2 of 2 files ok\n")

    out = io.StringIO()
    assert check_files([good, latin1, tmp_path / "missing.bpmn"], out) == 1
    report = out.getvalue()
    assert f"{latin1}: error xml_malformed: " in report
    assert f"{tmp_path / 'missing.bpmn'}: error: cannot read" in report
    assert report.endswith("1 of 3 files ok\n")
