"""What XML can carry: the namespace table of a repaired model, writable names and values.

:class:`Writable` is repair's view of names and values: it keeps the namespace bindings XML
allows, declares a well-known prefix a name needs, and cleans attribute maps and slots; every
fix goes through the ``warn`` it was given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from bpmn.fragments import read_fragment
from bpmn.geometry import format_number, is_number
from bpmn.qnames import WELL_KNOWN, is_ncname, is_qname, is_xml_text, local_name, prefix_of
from bpmn.tree import BPMN_NS, DI_KINDS, XML_NS
from bpmn.xsd_order import type_of

__all__ = ["Writable", "text_value"]

_SLOT: Final = re.compile(r"(.+)#(\d+)")
_XMLNS_URI: Final = "http://www.w3.org/2000/xmlns/"

Warn = Callable[[str, str | None], None]


class Writable:
    """Namespace bindings and name checks for one repair; fixes are reported to ``warn``."""

    def __init__(self, warn: Warn) -> None:
        self.warn = warn
        self.pairs: list[tuple[str, str]] = []
        self.bound: dict[str, str] = {}
        self.names: dict[tuple[str, bool], bool] = {}

    # --- names ------------------------------------------------------------------------------

    def namespaces(self, pairs: object) -> None:
        for pair in pairs if isinstance(pairs, list | tuple) else ():
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                self.warn(f"dropped a namespace that is not [prefix, uri]: {pair!r}", None)
                continue
            prefix, uri = pair
            valid = (
                isinstance(prefix, str)
                and isinstance(uri, str)
                and (prefix == "" or is_ncname(prefix))
                and prefix not in ("xml", "xmlns")
                and bool(uri)
                and is_xml_text(uri)
                and uri not in (XML_NS, _XMLNS_URI)
            )
            if not valid:
                self.warn(f"dropped the namespace binding {pair!r}", None)
            elif prefix in self.bound:
                if self.bound[prefix] != uri:
                    self.warn(
                        f"prefix {prefix!r} was bound twice; kept {self.bound[prefix]!r}", None
                    )
            else:
                self.bind(prefix, uri)

    def bind(self, prefix: str, uri: str) -> None:
        self.bound[prefix] = uri
        self.pairs.append((prefix, uri))

    def prefix(self, uri: str, preferred: str) -> str:
        """A prefix bound to ``uri``, binding ``preferred`` (or a variant) when none is."""
        for prefix, bound in self.pairs:
            if bound == uri:
                return prefix
        candidate, n = preferred, 1
        while candidate in self.bound:
            candidate, n = f"{preferred}{n}", n + 1
        self.bind(candidate, uri)
        return candidate

    def name(self, qname: object, *, element: bool) -> bool:
        """Whether ``qname`` can be written, declaring a well-known prefix it needs."""
        if not isinstance(qname, str):
            return False
        # Names repeat (every task has a "name"); a big diagram asks this 100,000 times.
        known = self.names.get((qname, element))
        if known is None:
            known = self.names[(qname, element)] = self.check_name(qname, element=element)
        return known

    def check_name(self, qname: str, *, element: bool) -> bool:
        if not is_qname(qname):
            return False
        prefix = prefix_of(qname)
        if prefix == "xmlns" or (not prefix and qname == "xmlns"):
            return False
        if prefix == "xml":
            return not element
        if not prefix or prefix in self.bound:
            return True
        if prefix in WELL_KNOWN:
            self.bind(prefix, WELL_KNOWN[prefix])
            return True
        return False

    def uri(self, qname: str) -> str | None:
        prefix = prefix_of(qname)
        if prefix == "xml":
            return XML_NS
        if not prefix and ":" not in qname:
            return self.bound.get("") if qname else None
        return self.bound.get(prefix)

    def strings(
        self, value: object, what: str, key: str | None, *, reserved: tuple[str, ...]
    ) -> dict[str, str]:
        """Attributes: writable names, unique expanded names, values as XML text."""
        result: dict[str, str] = {}
        seen: set[tuple[str | None, str]] = set()
        for name, item in value.items() if isinstance(value, Mapping) else ():
            text = text_value(item)
            if name in reserved or not self.name(name, element=False) or text is None:
                self.warn(f"{what}: dropped the attribute {name!r}", key)
                continue
            expanded = (self.uri(name) if ":" in name else None, local_name(name))
            if expanded in seen:
                self.warn(
                    f"{what}: dropped {name!r}, another name for an attribute already set", key
                )
            else:
                seen.add(expanded)
                result[name] = self.clean(text, what, key)
        return result

    def clean(self, text: str, what: str, key: str | None) -> str:
        if is_xml_text(text):
            return text
        self.warn(f"{what}: removed characters XML cannot carry", key)
        return "".join(char for char in text if is_xml_text(char))

    def slots(
        self,
        value: object,
        what: str,
        key: str,
        derived: frozenset[str],
        check: Callable[[str, tuple[str | None, str]], bool],
    ) -> dict[str, str]:
        result: dict[str, str] = {}
        for slot, item in value.items() if isinstance(value, Mapping) else ():
            text = text_value(item)
            match = _SLOT.fullmatch(slot) if isinstance(slot, str) else None
            named = slot == "." or (
                match is not None
                and self.name(match[1], element=True)
                and local_name(match[1]) not in derived
            )
            tag = match[1] if match is not None else ""
            if not named or text is None or not check(text, (self.uri(tag), local_name(tag))):
                self.warn(f"{what} {key!r}: dropped the slot {slot!r}", key)
            else:
                cleaned = self.clean(text, what, key)
                # An element's own whitespace is indentation to parse: not kept, not written.
                if slot != "." or (cleaned and not cleaned.isspace()):
                    result[slot] = cleaned
        return result

    def holds(self, xml: str, tag: tuple[str | None, str]) -> bool:
        """Whether ``xml`` is one well-formed element named ``tag`` (namespace, local name)."""
        fragment = read_fragment(xml) if isinstance(xml, str) else None
        return fragment is not None and (fragment.namespace or None, fragment.local) == tag

    def entry_type(self, qname: object, uri: str) -> str | None:
        """``qname`` if it names an element of ``uri``; else the same local name with a prefix
        bound to ``uri``, when that is an element the schema knows; else None."""
        if not isinstance(qname, str):
            return None
        if self.name(qname, element=True) and self.uri(qname) == uri:
            return qname
        local = local_name(qname)
        known = type_of(local) is not None if uri == BPMN_NS else local in DI_KINDS
        if not known or not is_ncname(local):
            return None
        prefix = self.prefix(uri, "bpmn" if uri == BPMN_NS else "bpmndi")
        return f"{prefix}:{local}" if prefix else local


def text_value(value: object) -> str | None:
    """A value as XML text: strings as they are, numbers and booleans as XML writes them."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return format_number(float(value))
    return None
