"""Hostile input through :func:`bpmn.parse.parse`: refused with a typed error, cheaply."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpmn.parse import parse
from core.errors import (
    CollabError,
    DuplicateId,
    InvalidInput,
    NotBpmn,
    XmlForbidden,
    XmlLimitExceeded,
    XmlMalformed,
    XmlTooLarge,
)

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
DEFINITIONS = f'<definitions xmlns="{BPMN}" id="d" targetNamespace="urn:t">'


def document(body: str, prologue: str = "") -> bytes:
    return f"{prologue}{DEFINITIONS}{body}</definitions>".encode()


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE definitions [\n<!ENTITY lol "lol">\n'
    + b"".join(
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">\n'.encode()
        for n in range(1, 10)
    )
    + f']>\n{DEFINITIONS}<process id="p" name="&lol9;"/></definitions>'.encode()
)


@pytest.mark.parametrize(
    ("xml", "error"),
    [
        (BILLION_LAUGHS, XmlForbidden),
        (
            document(
                '<process id="p" name="&xxe;"/>',
                '<!DOCTYPE definitions [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
            ),
            XmlForbidden,
        ),
        (
            document(
                '<process id="p" name="&xxe;"/>',
                '<!DOCTYPE definitions [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>',
            ),
            XmlForbidden,
        ),
        (
            document(
                "<process id='p'>%pe;</process>",
                '<!DOCTYPE definitions [<!ENTITY % pe SYSTEM "http://127.0.0.1:9/x.dtd"> %pe;]>',
            ),
            XmlForbidden,
        ),
        (document('<process id="p" name="&undeclared;"/>'), XmlForbidden),
        (document("", '<!DOCTYPE definitions SYSTEM "http://127.0.0.1:9/x.dtd">'), XmlForbidden),
    ],
    ids=["billion-laughs", "xxe-file", "xxe-http", "parameter-entity", "undeclared-entity", "dtd"],
)
def test_entities_and_doctypes_are_refused(xml: bytes, error: type[CollabError]) -> None:
    with pytest.raises(error):
        parse(xml)


def test_deep_nesting_is_refused() -> None:
    depth = 100_000
    xml = document("<process id='p'>" + "<a>" * depth + "</a>" * depth + "</process>")
    with pytest.raises(XmlLimitExceeded):
        parse(xml)


def test_deep_nesting_is_refused_at_the_given_depth() -> None:
    xml = document('<process id="p"><subProcess id="s"><task id="t"/></subProcess></process>')
    parse(xml, max_depth=4)
    with pytest.raises(XmlLimitExceeded):
        parse(xml, max_depth=3)


def test_fifty_megabytes_of_attributes_are_refused() -> None:
    attributes = b" ".join(b'a%d="%s"' % (n, b"x" * 1000) for n in range(50_000))
    xml = b'<definitions xmlns="' + BPMN.encode() + b'" ' + attributes + b"/>"
    assert len(xml) > 50_000_000
    with pytest.raises(XmlTooLarge):
        parse(xml)


def test_a_fifty_megabyte_attribute_is_refused_under_a_higher_byte_limit() -> None:
    xml = document(f'<process id="p" name="{"x" * 50_000_000}"/>')
    with pytest.raises(XmlLimitExceeded):  # libxml2's own cap on one text or attribute
        parse(xml, max_bytes=64 * 1024 * 1024)


def test_too_many_elements_are_refused() -> None:
    xml = document('<process id="p">' + "<task/>" * 1000 + "</process>")
    with pytest.raises(XmlLimitExceeded):
        parse(xml, max_elements=100)


def test_latin1_bytes_declared_utf8_are_refused() -> None:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'{DEFINITIONS}<process id="p" name="Prüfung"/></definitions>'
    ).encode("latin-1")
    with pytest.raises(XmlMalformed) as caught:
        parse(xml)
    assert caught.value.fields["line"] == 1


@pytest.mark.parametrize(
    "xml",
    [b"", b"not xml at all", b'{"json": true}', b"<definitions", b"\x00\x01\x02", b"<a></b>"],
    ids=["empty", "text", "json", "truncated", "binary", "mismatched"],
)
def test_what_is_not_xml_is_refused(xml: bytes) -> None:
    with pytest.raises(XmlMalformed):
        parse(xml)


def test_other_roots_are_not_bpmn() -> None:
    with pytest.raises(NotBpmn):
        parse(b'<svg xmlns="http://www.w3.org/2000/svg"/>')


def test_duplicate_ids_are_refused_with_their_lines() -> None:
    xml = document('\n<process id="p">\n<task id="t"/>\n<task id="t"/>\n</process>')
    with pytest.raises(DuplicateId) as caught:
        parse(xml)
    assert caught.value.ids == ["t"]
    assert caught.value.lines == {"t": [3, 4]}
    assert "'t' (lines 3, 4)" in caught.value.detail


def test_parse_takes_bytes_only() -> None:
    with pytest.raises(TypeError):
        parse("<definitions/>")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_a_documented_error(xml: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        parse(xml)


STARTER = document(
    '<process id="p"><startEvent id="s"/><task id="t"/>'
    '<sequenceFlow id="f" sourceRef="s" targetRef="t"/></process>'
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(STARTER)), st.integers(0, 6), st.binary(max_size=6)),
        min_size=1,
        max_size=3,
    )
)
def test_damaged_documents_parse_or_raise_a_documented_error(
    edits: list[tuple[int, int, bytes]],
) -> None:
    xml = STARTER
    for at, cut, insert in edits:
        xml = xml[:at] + insert + xml[at + cut :]
    with contextlib.suppress(InvalidInput):
        parse(xml)
