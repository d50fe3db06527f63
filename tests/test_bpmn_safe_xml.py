"""The safe XML gate: hostile documents are refused without being acted on."""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from bpmn.safe_xml import new_parser, parse_document
from core.errors import (
    CollabError,
    XmlForbidden,
    XmlLimitExceeded,
    XmlMalformed,
    XmlTooLarge,
)

LIMITS: dict[str, int] = {"max_bytes": 32 * 1024 * 1024, "max_depth": 256, "max_elements": 500_000}
DOCUMENTED = (XmlTooLarge, XmlMalformed, XmlForbidden, XmlLimitExceeded)


def parse(xml: bytes, **overrides: int) -> etree._ElementTree:
    return parse_document(xml, **(LIMITS | overrides))


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


def flat(children: int) -> bytes:
    return b"<r>" + b"<a/>" * children + b"</r>"


# --- ordinary documents ---------------------------------------------------------------------


def test_returns_the_tree_with_comments_and_processing_instructions() -> None:
    xml = (
        b'<?xml version="1.0"?>\n<!-- before --><?app x?>'
        b"<r><!-- in --><?pi y?><c/></r><!-- after -->"
    )
    tree = parse(xml)
    root = tree.getroot()
    assert root.tag == "r"
    assert [type(node) for node in root] == [
        etree._Comment,
        etree._ProcessingInstruction,
        etree._Element,
    ]
    assert root.getprevious() is not None
    assert root.getnext() is not None
    assert tree.docinfo.internalDTD is None


def test_predefined_entities_and_character_references_are_fine() -> None:
    root = parse(b'<a t="&quot;&#x41;">&amp;&lt;&gt;&apos;&#66;</a>').getroot()
    assert root.text == "&<>'B"
    assert root.get("t") == '"A'


def test_whitespace_is_kept() -> None:
    root = parse(b"<a>\n  <b/>\n</a>").getroot()
    assert root.text == "\n  "


@pytest.mark.parametrize(
    ("xml", "text"),
    [
        (
            '<?xml version="1.0" encoding="ISO-8859-1"?><a>Gr\xfc\xdfe</a>'.encode("latin-1"),
            "Grüße",
        ),
        ('<?xml version="1.0" encoding="windows-1252"?><a>\x80</a>'.encode("latin-1"), "€"),
        ('<?xml version="1.0" encoding="UTF-8"?><a>Grüße</a>'.encode(), "Grüße"),
        ("\ufeff<a>Grüße</a>".encode("utf-16-le"), "Grüße"),
        ('<?xml version="1.0" encoding="UTF-16"?><a>Grüße</a>'.encode("utf-16"), "Grüße"),
    ],
    ids=["latin-1", "windows-1252", "utf-8", "utf-16-bom", "utf-16-declared"],
)
def test_declared_encoding_is_honoured(xml: bytes, text: str) -> None:
    assert parse(xml).getroot().text == text


def test_bytes_that_contradict_the_declared_encoding_are_malformed() -> None:
    with pytest.raises(XmlMalformed, match="line 1"):
        parse('<?xml version="1.0" encoding="UTF-8"?><a>Gr\xfc\xdfe</a>'.encode("latin-1"))


def test_str_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse_document("<a/>", **LIMITS)  # type: ignore[arg-type]


# --- DOCTYPE and entities -------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<definitions a="&lol9;">&lol9;</definitions>
"""

# Parameter entities nest the laughs inside the DTD itself, no reference in the document needed.
PARAMETER_LAUGHS = b"""<!DOCTYPE d [
 <!ENTITY % a "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx">
 <!ENTITY % b "%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;%a;">
 <!ENTITY % c "%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;%b;">
 <!ENTITY % d "%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;%c;">
 <!ENTITY e "%d;">
]><d>&e;</d>"""


@pytest.mark.parametrize(
    "xml",
    [
        BILLION_LAUGHS,
        PARAMETER_LAUGHS,
        b"<!DOCTYPE definitions><definitions/>",
        b'<?xml version="1.0"?>\n<!DOCTYPE definitions>\n<definitions/>',
        b'<!DOCTYPE definitions PUBLIC "-//X//DTD X//EN" "x.dtd"><definitions/>',
        b'<!DOCTYPE definitions SYSTEM "file:///etc/passwd"><definitions/>',
        b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>',
        b'<!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><d>&x;</d>',
        b'<!DOCTYPE d [<!ENTITY % x SYSTEM "file:///etc/passwd"> %x;]><d/>',
        b'<!DOCTYPE d [<!ENTITY x "y">]><d/>',
        # Everything after the DOCTYPE name is junk: refused before libxml2 reads it.
        b"<!DOCTYPE d [ <!ENTITY junk <<<< ]]]> <d",
        b"<!-- first --><?pi x?><!DOCTYPE d><d/>",
        "\ufeff<!DOCTYPE d><d/>".encode("utf-16-le"),
    ],
    ids=[
        "billion-laughs",
        "parameter-laughs",
        "plain",
        "plain-after-declaration",
        "public-id",
        "external-subset",
        "xxe-file",
        "xxe-http",
        "parameter-entity",
        "harmless-entity",
        "junk-subset",
        "after-comment-and-pi",
        "utf-16",
    ],
)
def test_doctype_is_refused(xml: bytes) -> None:
    with pytest.raises(XmlForbidden, match="DOCTYPE") as caught:
        parse(xml)
    assert caught.value.fields["construct"] == "doctype"
    assert "root:" not in caught.value.detail


@pytest.mark.parametrize(
    ("xml", "column"),
    [(b"<a>&x;</a>", 7), (b'<a t="&x;"/>', 10), (b"<a><b/>\n&lol9;</a>", 7)],
    ids=["content", "attribute", "undeclared-laugh"],
)
def test_entity_reference_without_a_doctype_is_refused(xml: bytes, column: int) -> None:
    with pytest.raises(XmlForbidden, match="entity") as caught:
        parse(xml)
    assert caught.value.fields["construct"] == "entity"
    assert caught.value.fields["column"] == column


# --- no file is read and no connection is made ----------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe: opening it for reading blocks until a writer comes, so a read shows."""
    path = tmp_path / "secret.fifo"
    os.mkfifo(path)
    return path


def blocks_on(fifo: Path, action: Callable[[], object]) -> bool:
    """Run ``action`` in a thread; True if it was still waiting on the pipe after a second."""
    done = threading.Event()

    def run() -> None:
        try:
            action()
        except Exception:  # noqa: S110 - whichever outcome, the test only asks whether it blocked
            pass
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    blocked = not done.wait(1.0)
    if blocked:
        # Give the reader its writer (and at once EOF) so the thread ends.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    thread.join(10)
    return blocked


FIFO_PAYLOADS = {
    "external-entity": '<!DOCTYPE d [<!ENTITY x SYSTEM "file://{path}">]><d>&x;</d>',
    "parameter-entity": '<!DOCTYPE d [<!ENTITY % x SYSTEM "file://{path}"> %x;]><d/>',
    "external-subset": '<!DOCTYPE d SYSTEM "file://{path}"><d/>',
}


@pytest.mark.parametrize("payload", FIFO_PAYLOADS.values(), ids=FIFO_PAYLOADS.keys())
def test_external_entities_are_never_opened(fifo: Path, payload: str) -> None:
    xml = payload.format(path=fifo).encode()

    def unsafe() -> object:
        return etree.fromstring(xml, etree.XMLParser(load_dtd=True, resolve_entities=True))

    # The control shows the payload would read the pipe; the gate must not touch it.
    assert blocks_on(fifo, unsafe)
    assert not blocks_on(fifo, lambda: parse(xml))
    with pytest.raises(XmlForbidden):
        parse(xml)


def test_new_parser_alone_does_not_open_external_entities(fifo: Path) -> None:
    xml = FIFO_PAYLOADS["external-entity"].format(path=fifo).encode()
    assert not blocks_on(fifo, lambda: etree.fromstring(xml, new_parser()))


def test_no_connection_is_made_for_a_remote_entity() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        for payload in (
            f'<!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/x">]><d>&x;</d>',
            f'<!DOCTYPE d [<!ENTITY % x SYSTEM "http://127.0.0.1:{port}/x"> %x;]><d/>',
            f'<!DOCTYPE d SYSTEM "http://127.0.0.1:{port}/x.dtd"><d/>',
        ):
            with pytest.raises(XmlForbidden):
                parse(payload.encode())
        # A listening socket turns readable when a connection is waiting to be accepted.
        readable, _, _ = select.select([listener], [], [], 0.2)
        assert readable == []


# --- size -----------------------------------------------------------------------------------


def test_size_is_checked_before_parsing() -> None:
    # Malformed and hostile, but one byte too long: only the size may be reported.
    xml = BILLION_LAUGHS + b"<<<not xml"
    with pytest.raises(XmlTooLarge) as caught:
        parse(xml, max_bytes=len(xml) - 1)
    assert caught.value.fields == {"size": len(xml), "limit": len(xml) - 1}


def test_exactly_the_size_limit_is_accepted() -> None:
    xml = b"<a>" + b"x" * 100 + b"</a>"
    assert parse(xml, max_bytes=len(xml)).getroot().tag == "a"


def test_empty_input_is_malformed() -> None:
    with pytest.raises(XmlMalformed, match="empty"):
        parse(b"")


# --- structural limits ----------------------------------------------------------------------


def test_depth_at_the_limit_is_accepted() -> None:
    assert parse(nested(10), max_depth=10).getroot().tag == "a"


def test_depth_over_the_limit_is_refused() -> None:
    with pytest.raises(XmlLimitExceeded, match="deeper than 10") as caught:
        parse(nested(11), max_depth=10)
    assert caught.value.fields["limit"] == "depth"


def test_libxml2_depth_cap_is_reported_as_a_limit() -> None:
    # libxml2 stops at 256 levels whatever max_depth says (huge_tree stays off).
    assert parse(nested(256), max_depth=10_000).getroot().tag == "a"
    with pytest.raises(XmlLimitExceeded):
        parse(nested(257), max_depth=10_000)


def test_element_count_at_the_limit_is_accepted() -> None:
    assert len(parse(flat(99), max_elements=100).getroot()) == 99


def test_element_count_over_the_limit_is_refused() -> None:
    with pytest.raises(XmlLimitExceeded, match="more than 100 elements") as caught:
        parse(flat(100), max_elements=100)
    assert caught.value.fields["limit"] == "elements"


def test_comments_and_processing_instructions_are_not_elements() -> None:
    xml = b"<r>" + b"<!--c--><?p?>" * 50 + b"<a/></r>"
    assert len(parse(xml, max_elements=2).getroot()) == 101


def test_element_limit_stops_the_parse_early() -> None:
    # The limit is hit in the first chunk; the document only breaks megabytes later.
    # Had the whole document been parsed first, this would be XmlMalformed.
    xml = flat(1_000_000)[:-4] + b"<broken"
    with pytest.raises(XmlLimitExceeded) as caught:
        parse(xml, max_elements=1_000)
    assert caught.value.fields["line"] == 1


# --- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xml", "line", "column"),
    [
        (b"<a>\n  <b>\n</a>", 3, 5),
        (b"<a/>\n<b/>", 2, 1),
        (b"<a>\n\n  <b c=1/></a>", 3, 8),
        (b"no xml at all", 1, 1),
    ],
)
def test_malformed_input_reports_line_and_column(xml: bytes, line: int, column: int) -> None:
    with pytest.raises(XmlMalformed) as caught:
        parse(xml)
    assert caught.value.fields["line"] == line
    assert caught.value.fields["column"] == column
    assert f"line {line}, column {column}" in caught.value.detail


def test_error_details_do_not_leak_between_parses() -> None:
    with pytest.raises(XmlMalformed):
        parse(b"<a><b></a>")
    with pytest.raises(XmlMalformed) as caught:
        parse(b"<x>\n</y>")
    assert "mismatch" in caught.value.detail
    assert caught.value.fields["line"] == 2


# --- concurrency ----------------------------------------------------------------------------


def test_parses_concurrently_in_threads() -> None:
    documents = [f"<r n='{i}'>{'<a/>' * i}</r>".encode() for i in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        trees = list(pool.map(parse, documents))
    assert [len(tree.getroot()) for tree in trees] == list(range(200))
    assert [tree.getroot().get("n") for tree in trees] == [str(i) for i in range(200)]


# --- fuzzing --------------------------------------------------------------------------------

XML_PIECES = [
    b"<a>",
    b"</a>",
    b"<b x='1'/>",
    b"<?xml version='1.0' encoding='ISO-8859-1'?>",
    b'<?xml version="1.0" encoding="UTF-16"?>',
    b"<!DOCTYPE a>",
    b"<!DOCTYPE a [<!ENTITY e 'x'>]>",
    b"<!ENTITY % p SYSTEM 'file:///etc/passwd'>",
    b"%p;",
    b"&e;",
    b"&amp;",
    b"&#0;",
    b"&#x10FFFF;",
    b"<!--",
    b"-->",
    b"<?pi data?>",
    b"<![CDATA[",
    b"]]>",
    b"xmlns:p='urn:x'",
    b"<p:q xmlns:p='http://a b'/>",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\x00",
    b"\xe4",
    b"text",
    b" ",
]


def assert_parses_or_documented(xml: bytes, **limits: int) -> None:
    """Any exception other than a CollabError escapes and fails the test."""
    error: CollabError | None = None
    try:
        parse(xml, **limits)
    except CollabError as exc:
        error = exc
    assert error is None or isinstance(error, DOCUMENTED), repr(error)
    assert error is None or error.detail


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_parse_or_raise_a_documented_error(xml: bytes) -> None:
    assert_parses_or_documented(xml)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(XML_PIECES), max_size=40).map(b"".join),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=1, max_value=4096),
)
def test_xml_like_bytes_parse_or_raise_a_documented_error(
    xml: bytes, max_depth: int, max_elements: int, max_bytes: int
) -> None:
    assert_parses_or_documented(
        xml, max_depth=max_depth, max_elements=max_elements, max_bytes=max_bytes
    )
