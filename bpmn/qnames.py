"""Qualified names as written, and the one namespace table a rendered document declares.

The model keeps tags and attribute names with the prefixes the source used (``bpmn:task``,
``semantic:task``, ``task``), and ``meta.namespaces`` lists the bindings that make them mean
what they meant: render declares them all on the root. :class:`NamespaceTable` builds that list
while :mod:`bpmn.parse` walks a tree. When a document binds one prefix to two URIs (Bizagi
rebinds the default namespace to BPMNDI for its diagram), names under the second binding are
renamed to a prefix that means their URI in the table, and a warning says so.
"""

from __future__ import annotations

import re
from typing import Final

from lxml import etree

from bpmn.model import ModelWarning
from bpmn.tree import BPMN_NS, BPMNDI_NS, DC_NS, DI_NS, XML_NS, XSI_NS, source_line

__all__ = [
    "NAMESPACE_CONFLICT",
    "WELL_KNOWN",
    "NamespaceTable",
    "is_ncname",
    "is_qname",
    "is_xml_text",
    "local_name",
    "prefix_of",
    "xml_text",
]

#: Prefixes render may declare when a name uses them and ``namespaces`` does not.
WELL_KNOWN: Final[dict[str, str]] = {
    "bpmn": BPMN_NS,
    "bpmndi": BPMNDI_NS,
    "dc": DC_NS,
    "di": DI_NS,
    "xsi": XSI_NS,
}
NAMESPACE_CONFLICT: Final = "xml-namespace-conflict"

# XML 1.0 (fifth edition) NameStartChar and NameChar, without ":" (an NCName).
_START: Final = (
    "A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_CHAR: Final = _START + r"\-.0-9\u00b7\u0300-\u036f\u203f-\u2040"
_NCNAME: Final = re.compile(f"[{_START}][{_CHAR}]*")
_QNAME: Final = re.compile(f"(?:[{_START}][{_CHAR}]*:)?[{_START}][{_CHAR}]*")
# Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML: Final = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def is_ncname(name: str) -> bool:
    return _NCNAME.fullmatch(name) is not None


def is_qname(name: str) -> bool:
    return _QNAME.fullmatch(name) is not None


def is_xml_text(value: str) -> bool:
    return _NOT_XML.search(value) is None


def xml_text(value: str) -> str:
    """``value`` without the characters XML cannot carry."""
    return _NOT_XML.sub("", value)


def prefix_of(qname: str) -> str:
    return qname.rpartition(":")[0]


def local_name(qname: str) -> str:
    return qname.rpartition(":")[2]


def _qualified(prefix: str, local: str) -> str:
    return f"{prefix}:{local}" if prefix else local


class NamespaceTable:
    """``meta.namespaces`` in the making, and the model names of the elements walked.

    Bindings come from the root and from every element the model keeps by name, in
    document order; the first binding of a prefix wins.
    """

    def __init__(self, root: etree._Element) -> None:
        self.pairs: list[tuple[str, str]] = []
        self.warnings: list[ModelWarning] = []
        self._bound: dict[str, str] = {}
        self._reported: dict[tuple[str, str], int] = {}  # -> index in warnings
        self._declare(root, {})

    def tag(self, element: etree._Element, parent: etree._Element | None) -> str:
        """The model's qualified tag for ``element``, its own declarations taken in first."""
        if parent is not None:
            self._declare(element, parent.nsmap)
        qname = etree.QName(element)
        uri = qname.namespace or ""
        prefix = element.prefix or ""
        if self._bound.get(prefix) == uri:
            return _qualified(prefix, qname.localname)
        return _qualified(self._rename(element, prefix, uri, allow_default=True), qname.localname)

    def attribute(self, element: etree._Element, name: str) -> str:
        """The model's qualified name for the attribute ``name`` (Clark notation) of ``element``."""
        if not name.startswith("{"):
            return name
        qname = etree.QName(name)
        uri = qname.namespace or ""
        if uri == XML_NS:
            return f"xml:{qname.localname}"
        # lxml keeps no attribute prefix; any prefix in scope for the URI was the one written,
        # and one the table binds the same way is the least surprising pick.
        written = [p for p, u in element.nsmap.items() if p and u == uri]
        for prefix in written:
            if self._bound.get(prefix) == uri:
                return f"{prefix}:{qname.localname}"
        prefix = written[0] if written else ""
        return f"{self._rename(element, prefix, uri, allow_default=False)}:{qname.localname}"

    def _declare(self, element: etree._Element, inherited: dict[str | None, str]) -> None:
        for prefix_or_none, uri in element.nsmap.items():
            prefix = prefix_or_none or ""
            if inherited.get(prefix_or_none) == uri or not uri:
                continue  # not declared here, or an undeclaration (xmlns="")
            bound = self._bound.get(prefix)
            if bound is None:
                self._bind(prefix, uri)
            elif bound != uri:
                self._conflict(element, prefix, uri)

    def _rename(
        self, element: etree._Element, prefix: str, uri: str, *, allow_default: bool
    ) -> str:
        """A prefix the table binds to ``uri``, binding a new one when there is none."""
        for bound_prefix, bound_uri in self.pairs:
            if bound_uri == uri and (bound_prefix or allow_default):
                return bound_prefix
        if (prefix or allow_default) and prefix not in self._bound:
            self._bind(prefix, uri)
            return prefix
        fresh = next(
            candidate
            for candidate in self._candidates(uri)
            if candidate not in self._bound and candidate != "xml"
        )
        self._bind(fresh, uri)
        self._conflict(element, prefix, uri, renamed=fresh)
        return fresh

    @staticmethod
    def _candidates(uri: str) -> list[str]:
        known = [prefix for prefix, known_uri in WELL_KNOWN.items() if known_uri == uri]
        return [*known, *(f"ns{n}" for n in range(1, 10_000))]

    def _bind(self, prefix: str, uri: str) -> None:
        self._bound[prefix] = uri
        self.pairs.append((prefix, uri))

    def _conflict(
        self, element: etree._Element, prefix: str, uri: str, renamed: str | None = None
    ) -> None:
        shown = f"prefix {prefix!r}" if prefix else "the default namespace"
        message = f"{shown} is bound to {self._bound.get(prefix)!r} and to {uri!r}"
        if renamed is not None:
            message += f"; names in {uri!r} are written with prefix {renamed!r}"
        warning = ModelWarning(NAMESPACE_CONFLICT, message, source_line(element), element.get("id"))
        index = self._reported.get((prefix, uri))
        if index is None:
            self._reported[(prefix, uri)] = len(self.warnings)
            self.warnings.append(warning)
        elif renamed is not None:
            # The first report said only that the prefix is bound twice; say what became of it.
            first = self.warnings[index]
            self.warnings[index] = ModelWarning(first.code, message, first.line, first.id)
