"""The gate untrusted XML passes before anything else looks at it.

:func:`parse_document` turns bytes from the wire into an lxml tree or raises one
of the documented errors, in this order:

1. :class:`~core.errors.XmlTooLarge`: the byte count is checked before any
   parser sees the input.
2. :class:`~core.errors.XmlForbidden`: a DOCTYPE (with or without an internal
   subset) or an entity reference other than the five predefined ones.
3. :class:`~core.errors.XmlMalformed`: not well-formed; the detail carries
   libxml2's message with line and column.
4. :class:`~core.errors.XmlLimitExceeded`: nesting deeper than ``max_depth``
   or more than ``max_elements`` elements.

The DOCTYPE is refused by a prologue probe that stops libxml2 at the
``<!DOCTYPE name`` token, before the internal subset is read, so entity
declarations (billion laughs, XXE, parameter entities) are never declared,
let alone expanded or fetched. The tree is then built by a pull parser fed in
chunks, counting elements as they arrive, so an oversized flat document is
refused after ``max_elements`` nodes rather than after the whole tree exists.

Every parser is created per call and used by one call only: lxml parsers hold
per-parse state and must not be shared between threads, and creating one is
cheap. :func:`parse_document` is therefore safe to run concurrently (for
example via ``asyncio.to_thread``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypedDict

from lxml import etree

from core.errors import XmlForbidden, XmlLimitExceeded, XmlMalformed, XmlTooLarge

__all__ = ["new_parser", "parse_document"]

# Big enough that the per-feed overhead vanishes, small enough that the limits
# are checked long before a 32 MiB flat document has become a tree.
_CHUNK_BYTES: Final = 64 * 1024

# libxml2 error types (names are libxml2's enum names, stable across lxml releases).
_ENTITY_ERRORS: Final = frozenset({"ERR_UNDECLARED_ENTITY", "WAR_UNDECLARED_ENTITY"})
_LIMIT_ERRORS: Final = frozenset({"ERR_RESOURCE_LIMIT"})
_ERROR_LEVEL: Final = 2  # libxml2 XML_ERR_ERROR; FATAL is 3, warnings are below
# iter() takes the Entity factory as a node-type filter.
_ENTITY_NODE: Final[object] = etree.Entity


class _Hardening(TypedDict):
    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    dtd_validation: bool
    huge_tree: bool
    remove_blank_text: bool


# One place for the options, so the probe, the tree parser and new_parser() cannot drift.
_HARDENING: Final[_Hardening] = {
    "resolve_entities": False,  # never substitute entity text
    "no_network": True,  # never fetch anything over the network
    "load_dtd": False,  # never read an external DTD or parameter entity
    "dtd_validation": False,
    "huge_tree": False,  # keep libxml2's own caps (depth 256, 10 MB text nodes)
    "remove_blank_text": False,  # whitespace is content; keep the document as written
}


def new_parser() -> etree.XMLParser:
    """A fresh lxml parser with the hardened options; one per call, never shared.

    It refuses to resolve, load or fetch entities and DTDs, but on its own it
    still accepts a DOCTYPE. Untrusted input goes through :func:`parse_document`.
    """
    return etree.XMLParser(**_HARDENING)


def parse_document(
    xml: bytes, *, max_bytes: int, max_depth: int, max_elements: int
) -> etree._ElementTree:
    """Parse untrusted XML bytes into a tree, or raise a documented error.

    The encoding is the one the document declares (or its BOM, or UTF-8).
    Comments and processing instructions are kept. Depth counts the root as 1;
    libxml2 itself stops at depth 256, which is reported the same way.
    """
    if not isinstance(xml, bytes):
        raise TypeError(f"parse_document takes bytes, not {type(xml).__name__}")
    if len(xml) > max_bytes:
        raise XmlTooLarge(size=len(xml), limit=max_bytes)
    if not xml:
        # Said here because a feed parser given nothing reports no position at all.
        raise XmlMalformed("not well-formed XML: the document is empty", reason="empty")
    _refuse_doctype(xml)
    root = _parse_with_limits(xml, max_depth=max_depth, max_elements=max_elements)
    tree = root.getroottree()
    _refuse_leftovers(tree)
    return tree


# --- step 1: the prologue probe -------------------------------------------------------------


class _Stop(Exception):
    """Raised from a probe callback to halt libxml2 at once."""


class _PrologueProbe:
    """Parser target that stops at the DOCTYPE or at the root element's start tag.

    lxml calls ``doctype`` from libxml2's internalSubset event, which fires after
    ``<!DOCTYPE name ...`` and before ``[`` is read, so stopping there means no
    declaration in the subset is ever parsed.
    """

    def __init__(self) -> None:
        self.doctype_name: str | None = None
        self.reached_root = False

    def doctype(self, name: str | None, pubid: str | None, system: str | None) -> None:
        self.doctype_name = name or ""
        raise _Stop

    def start(self, tag: str | bytes, attrib: dict[Any, Any]) -> None:
        self.reached_root = True
        raise _Stop

    def end(self, tag: str | bytes) -> None:
        pass

    def data(self, data: str | bytes) -> None:
        pass

    def comment(self, text: str | bytes) -> None:
        pass

    def pi(self, target: str | bytes, data: str | bytes | None = None) -> None:
        pass

    def close(self) -> None:
        return None


def _refuse_doctype(xml: bytes) -> None:
    probe = _PrologueProbe()
    parser = etree.XMLParser(target=probe, **_HARDENING)
    try:
        for chunk in _chunks(xml):
            parser.feed(chunk)
        # Only reached when the input ended before a root element: let libxml2 say why.
        parser.close()
    except _Stop:
        pass
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, parser.feed_error_log) from None
    if probe.doctype_name is not None:
        raise XmlForbidden(
            f"DOCTYPE declarations are not allowed (found <!DOCTYPE {probe.doctype_name}>)",
            construct="doctype",
            name=probe.doctype_name,
        )
    if not probe.reached_root:
        # close() succeeded without a root element; libxml2 should never allow that.
        raise XmlMalformed("the document has no root element")


# --- step 2: the tree, with limits checked as it grows --------------------------------------


def _parse_with_limits(xml: bytes, *, max_depth: int, max_elements: int) -> etree._Element:
    parser = etree.XMLPullParser(events=("start", "end"), **_HARDENING)
    depth = 0
    count = 0
    try:
        for chunk in _chunks(xml):
            parser.feed(chunk)
            for event, element in parser.read_events():
                if event == "end":
                    depth -= 1
                    continue
                depth += 1
                count += 1
                if depth > max_depth:
                    raise XmlLimitExceeded(
                        f"elements nest deeper than {max_depth} levels{_at(element)}",
                        limit="depth",
                        max=max_depth,
                        line=_line(element),
                    )
                if count > max_elements:
                    raise XmlLimitExceeded(
                        f"the document has more than {max_elements} elements{_at(element)}",
                        limit="elements",
                        max=max_elements,
                        line=_line(element),
                    )
        return parser.close()
    except etree.XMLSyntaxError as exc:
        # feed_error_log holds this run's messages only; exc.error_log may hold
        # messages from earlier feed parses on this thread.
        raise _syntax_error(exc, parser.feed_error_log) from None


def _refuse_leftovers(tree: etree._ElementTree) -> None:
    """Defence in depth: the probe already refused these, so this never fires."""
    info = tree.docinfo
    # libxml2 records any DOCTYPE, even one without a subset, as an internal DTD.
    if info.internalDTD is not None or info.externalDTD is not None:
        raise XmlForbidden("DOCTYPE declarations are not allowed", construct="doctype")
    if next(tree.getroot().iter(_ENTITY_NODE), None) is not None:
        raise XmlForbidden("entity references are not allowed", construct="entity")


# --- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Problem:
    type_name: str
    message: str
    line: int
    column: int


def _syntax_error(
    exc: etree.XMLSyntaxError, log: Iterable[Any]
) -> XmlMalformed | XmlForbidden | XmlLimitExceeded:
    """Map libxml2's first error to the documented error for it."""
    problem = _first_problem(log)
    if problem is None:
        line, column = exc.position
        problem = _Problem("", _strip_position(str(exc.msg)), line, column)
    where = f"line {problem.line}, column {problem.column}" if problem.line else "no position"
    if problem.type_name in _ENTITY_ERRORS:
        return XmlForbidden(
            f"entity references other than &amp; &lt; &gt; &quot; &apos; are not allowed "
            f"({problem.message}; {where})",
            construct="entity",
            line=problem.line,
            column=problem.column,
        )
    if problem.type_name in _LIMIT_ERRORS:
        return XmlLimitExceeded(
            f"the XML exceeds a parser limit: {problem.message} ({where})",
            limit="parser",
            line=problem.line,
            column=problem.column,
        )
    return XmlMalformed(
        f"not well-formed XML: {problem.message} ({where})",
        reason=problem.message,
        line=problem.line,
        column=problem.column,
    )


def _first_problem(log: Iterable[Any]) -> _Problem | None:
    # The first error is the cause; later ones are usually libxml2 tripping over it.
    for entry in log:
        if entry.level >= _ERROR_LEVEL:
            message = str(entry.message).strip()
            return _Problem(str(entry.type_name), message, int(entry.line), int(entry.column))
    return None


def _strip_position(message: str) -> str:
    # lxml appends ", line L, column C" to exception messages; the detail adds its own.
    head, sep, tail = message.rpartition(", line ")
    return head if sep and "column" in tail else message


def _line(node: object) -> int | None:
    # Typed loosely because lxml-stubs types both read_events() items and sourceline vaguely.
    line = getattr(node, "sourceline", None)
    return line if isinstance(line, int) else None


def _at(node: object) -> str:
    line = _line(node)
    return f" (line {line})" if line is not None else ""


def _chunks(xml: bytes) -> Iterator[bytes]:
    for offset in range(0, len(xml), _CHUNK_BYTES):
        yield xml[offset : offset + _CHUNK_BYTES]
