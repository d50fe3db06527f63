"""Write ``bpmn/xsd_sequences.py``: the child order of every BPMN 2.0 type, from the OMG XSDs.

Usage: ``python scripts/gen_xsd_order.py [XSD_DIR] [OUTPUT]`` (defaults: the shared corpus's
``xsd/`` folder and ``bpmn/xsd_sequences.py``). ``tests/test_bpmn_xsd_order.py`` regenerates
into a temporary file and compares, so the committed module cannot drift from the schema.

What the generated module holds:

- ``SEQUENCES``: complex type local name -> tuple of rank slots, each slot a tuple of child
  element local names. Base types come first (``tBaseElement``'s ``documentation`` and
  ``extensionElements`` open every semantic type). An ``xsd:element ref`` to a substitution
  group head expands to the head and every member, transitively, all in one slot: the schema
  lets ``flowElement``s of any kind interleave, so they must share a rank. ``xsd:choice``
  alternatives get consecutive slots in declaration order (they never occur together in a valid
  document, so any order is correct). ``xsd:any`` names nothing and adds no slot.
- ``ELEMENT_TYPES``: element local name -> type local name, for global elements and for local
  elements whose name is neither global nor declared with two different types
  (``childLaneSet`` -> ``tLaneSet``; ``condition`` is declared as both ``tExpression`` and
  ``tFormalExpression``, whose sequences are the same, so the first declaration wins).

Local names only: the BPMN, BPMNDI, DI and DC namespaces never reuse a type name, and the
generator checks that.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lxml import etree

XSD: Final = "http://www.w3.org/2001/XMLSchema"
FILES: Final = ("Semantic.xsd", "BPMN20.xsd", "BPMNDI.xsd", "DI.xsd", "DC.xsd")
ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_XSD_DIR: Final = ROOT.parent / "shared" / "corpus" / "xsd"
DEFAULT_OUTPUT: Final = ROOT / "bpmn" / "xsd_sequences.py"


def q(local: str) -> str:
    return f"{{{XSD}}}{local}"


def local(qname: str) -> str:
    return qname.rpartition(":")[2]


@dataclass(slots=True)
class Schema:
    """What the generator needs from the XSDs, by local name."""

    element_types: dict[str, str] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)  # member -> substitution group head
    bases: dict[str, str] = field(default_factory=dict)
    # Own particles of each type: a list of slots, a slot being [("ref"|"name", element)].
    particles: dict[str, list[list[tuple[str, str]]]] = field(default_factory=dict)
    local_types: dict[str, list[str]] = field(default_factory=dict)


def read_schema(xsd_dir: Path) -> Schema:
    schema = Schema()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    for name in FILES:
        root = etree.parse(str(xsd_dir / name), parser).getroot()
        for element in root.iterchildren(q("element")):
            _add(schema.element_types, element.get("name", ""), local(element.get("type", "")))
            group = element.get("substitutionGroup")
            if group:
                schema.heads[element.get("name", "")] = local(group)
        for complex_type in root.iterchildren(q("complexType")):
            _read_type(schema, complex_type)
    return schema


def _add(table: dict[str, str], key: str, value: str) -> None:
    if key in table and table[key] != value:
        raise SystemExit(f"{key!r} is declared twice, as {table[key]!r} and {value!r}")
    table[key] = value


def _read_type(schema: Schema, complex_type: etree._Element) -> None:
    name = complex_type.get("name", "")
    if name in schema.particles:
        raise SystemExit(f"type {name!r} is declared twice")
    extension = complex_type.find(f"{q('complexContent')}/{q('extension')}")
    holder = complex_type
    if extension is not None:
        schema.bases[name] = local(extension.get("base", ""))
        holder = extension
    slots: list[list[tuple[str, str]]] = []
    for group in holder:
        if group.tag in (q("sequence"), q("choice")):
            slots.extend(_slots(schema, group))
    schema.particles[name] = slots


def _slots(schema: Schema, group: etree._Element) -> Iterator[list[tuple[str, str]]]:
    for particle in group:
        if particle.tag == q("element"):
            ref = particle.get("ref")
            if ref is not None:
                yield [("ref", local(ref))]
                continue
            child = particle.get("name", "")
            child_type = particle.get("type")
            if child_type is not None:
                schema.local_types.setdefault(child, []).append(local(child_type))
            yield [("name", child)]
        elif particle.tag in (q("sequence"), q("choice")):
            yield from _slots(schema, particle)


def members(schema: Schema) -> dict[str, list[str]]:
    """Head -> the head and every element that may stand for it, transitively, sorted."""
    result: dict[str, list[str]] = {}
    for head in set(schema.heads.values()):
        group = {head}
        for element in schema.heads:
            current: str | None = element
            while current is not None:
                if current == head:
                    group.add(element)
                    break
                current = schema.heads.get(current)
        result[head] = sorted(group)
    return result


def sequences(schema: Schema) -> dict[str, tuple[tuple[str, ...], ...]]:
    groups = members(schema)
    result: dict[str, tuple[tuple[str, ...], ...]] = {}
    for type_name in sorted(schema.particles):
        chain = []
        current: str | None = type_name
        while current is not None and current in schema.particles:
            chain.append(current)
            current = schema.bases.get(current)
        slots: list[tuple[str, ...]] = []
        seen: set[str] = set()
        for ancestor in reversed(chain):
            for slot in schema.particles[ancestor]:
                names: list[str] = []
                for kind, element in slot:
                    names.extend(groups.get(element, [element]) if kind == "ref" else [element])
                # A name already ranked by a base type keeps its first rank.
                fresh = tuple(name for name in names if name not in seen)
                seen.update(fresh)
                if fresh:
                    slots.append(fresh)
        if slots:
            result[type_name] = tuple(slots)
    return result


def element_types(schema: Schema) -> dict[str, str]:
    result = dict(schema.element_types)
    table = sequences(schema)
    for name, types in schema.local_types.items():
        # A global element of the same name wins; two local types must order children alike.
        if name not in result and len({table.get(type_name) for type_name in types}) == 1:
            result[name] = types[0]
    return dict(sorted(result.items()))


def render(schema: Schema) -> str:
    lines = [
        '"""Child element order of every BPMN 2.0 type, generated from the OMG XSDs.',
        "",
        "Generated by ``scripts/gen_xsd_order.py``; do not edit by hand. ``SEQUENCES`` maps a",
        "type to its rank slots (children in one slot may interleave); ``ELEMENT_TYPES`` maps an",
        "element's local name to its type.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        "SEQUENCES: Final[dict[str, tuple[tuple[str, ...], ...]]] = {",
    ]
    for type_name, slots in sequences(schema).items():
        # Shaped the way ``ruff format`` leaves them, so the generated file passes its check.
        if len(slots) == 1 and len(slots[0]) == 1:
            lines.append(f'    "{type_name}": (("{slots[0][0]}",),),')
            continue
        lines.append(f'    "{type_name}": (')
        for slot in slots:
            lines.extend(_tuple_lines(slot))
        lines.append("    ),")
    lines.append("}")
    lines.append("")
    lines.append("ELEMENT_TYPES: Final[dict[str, str]] = {")
    types = element_types(schema)
    lines.extend(f'    "{name}": "{type_name}",' for name, type_name in types.items())
    lines.append("}")
    return "\n".join(lines) + "\n"


def _tuple_lines(slot: tuple[str, ...]) -> list[str]:
    if len(slot) == 1:
        return [f'        ("{slot[0]}",),']
    one_line = "        (" + ", ".join(f'"{name}"' for name in slot) + "),"
    if len(one_line) <= 100:
        return [one_line]
    return ["        (", *(f'            "{name}",' for name in slot), "        ),"]


def generate(xsd_dir: Path) -> str:
    return render(read_schema(xsd_dir))


def main(argv: list[str]) -> int:
    xsd_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_XSD_DIR
    output = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUTPUT
    output.write_text(generate(xsd_dir), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
