"""Self-contained XML fragments: ``body`` and ``ext`` values and ``raw`` entries.

At parse, :func:`serialize` writes a subtree as a standalone element that declares the
namespaces its names use (lxml's copy keeps the subtree's own declarations and adds the
inherited ones a name needs). At render, :func:`read_fragment` checks a stored fragment (a
client may have written anything) and :func:`embed` writes it inside the rendered document,
leaving out the declarations the root already makes and undeclaring the default namespace where
the fragment has names in no namespace.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Final

from lxml import etree

from bpmn.safe_xml import parse_document
from bpmn.tree import ID_NAMESPACES, model_elements
from core.errors import CollabError

__all__ = ["Fragment", "embed", "read_fragment", "serialize"]

# A fragment is one value in the document; these bound what render will parse for one.
_MAX_BYTES: Final = 32 * 1024 * 1024
_MAX_DEPTH: Final = 256
_MAX_ELEMENTS: Final = 500_000
# Snapshots render the same fragments again and again; a parse costs ~30 us.
_CACHE_SIZE: Final = 16_384
_ATTRIBUTE_ESCAPES: Final = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\n": "&#10;",
        "\r": "&#13;",
        "\t": "&#9;",
    }
)


def serialize(element: etree._Element) -> str:
    """``element`` and its content as a standalone XML string (no declaration, no tail)."""
    standalone = copy.deepcopy(element)
    return etree.tostring(standalone, encoding="unicode", with_tail=False)


@dataclass(frozen=True, slots=True)
class Fragment:
    """A fragment that parsed: its text as lxml writes it, and what its root declares."""

    text: str
    namespace: str  # of the root element, "" for none
    local: str
    declared: tuple[tuple[str, str], ...]  # (prefix or "", uri) declared on the root
    unqualified: bool  # some element has no namespace
    ids: tuple[str, ...]  # of BPMN and BPMNDI elements in it, as parse counts them


@functools.lru_cache(maxsize=_CACHE_SIZE)
def read_fragment(xml: str) -> Fragment | None:
    """``xml`` checked by the safe XML gate, or None when it is not one well-formed element."""
    try:
        data = xml.encode("utf-8")
        tree = parse_document(
            data, max_bytes=_MAX_BYTES, max_depth=_MAX_DEPTH, max_elements=_MAX_ELEMENTS
        )
    except (CollabError, UnicodeEncodeError, ValueError):
        return None
    root = tree.getroot()
    qname = etree.QName(root)
    unqualified = any(
        isinstance(node.tag, str) and not node.tag.startswith("{") for node in root.iter()
    )
    return Fragment(
        text=etree.tostring(root, encoding="unicode", with_tail=False),
        namespace=qname.namespace or "",
        local=qname.localname,
        declared=tuple((prefix or "", uri) for prefix, uri in root.nsmap.items()),
        unqualified=unqualified,
        ids=tuple(
            str(element.get("id"))
            for element in model_elements(root)
            if element.get("id") is not None and etree.QName(element).namespace in ID_NAMESPACES
        ),
    )


def embed(fragment: Fragment, context: dict[str, str]) -> str:
    """The fragment's text for a place where ``context`` (prefix -> URI) is in scope."""
    text = fragment.text
    end = text.index(">")  # libxml2 writes ">" in attribute values as "&gt;"
    start_tag, rest = text[:end], text[end:]
    has_default = False
    for prefix, uri in fragment.declared:
        has_default = has_default or not prefix
        if context.get(prefix) == uri:
            name = f"xmlns:{prefix}" if prefix else "xmlns"
            start_tag = start_tag.replace(f' {name}="{uri.translate(_ATTRIBUTE_ESCAPES)}"', "", 1)
    if fragment.unqualified and not has_default and context.get(""):
        name_end = 1
        while name_end < len(start_tag) and start_tag[name_end] not in " /":
            name_end += 1
        start_tag = f'{start_tag[:name_end]} xmlns=""{start_tag[name_end:]}'
    return start_tag + rest
