"""The BPMN document model in plain Python: the exact shape of the CRDT document
(``docs/crdt-schema.md``) without pycrdt, so parsing, rendering and diffing are
pure functions that are easy to test.

``parse`` (XML -> model), ``render`` (model -> XML), ``load`` (model -> Doc),
``read`` (Doc -> model) and ``diff`` (model, model -> changes) all meet here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

SCHEMA_VERSION: Final = 1

Geometry = list[float]
Points = list[list[float]]
RawSlot = Literal["elements", "di", ""]


@dataclass(slots=True)
class Element:
    """One entry of ``elements``: a BPMN semantic element."""

    type: str
    parent: str
    order: str
    attrs: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    body: dict[str, str] = field(default_factory=dict)
    ext: str | None = None
    anon: bool = False


@dataclass(slots=True)
class DiEntry:
    """One entry of ``di``: a BPMNDI diagram, plane, shape, edge or label style."""

    type: str
    parent: str
    order: str
    element: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    bounds: Geometry | None = None
    waypoints: Points | None = None
    label: Geometry | None = None
    label_attrs: dict[str, str] = field(default_factory=dict)
    font: dict[str, str] | None = None
    anon: bool = False


@dataclass(slots=True)
class RawEntry:
    """One entry of ``raw``: XML kept verbatim under ``parent``."""

    parent: str
    slot: RawSlot
    order: str
    xml: str


@dataclass(frozen=True, slots=True)
class ModelWarning:
    """Something odd in a real file that is kept, not refused (dangling reference, ...)."""

    code: str
    message: str
    line: int | None = None
    id: str | None = None


@dataclass(slots=True)
class BpmnModel:
    tag: str
    definitions: dict[str, str]
    namespaces: list[tuple[str, str]]
    elements: dict[str, Element] = field(default_factory=dict)
    di: dict[str, DiEntry] = field(default_factory=dict)
    raw: dict[str, RawEntry] = field(default_factory=dict)
    warnings: list[ModelWarning] = field(default_factory=list)
