"""A small SVG picture of a diagram, for lists and previews.

``thumbnail_svg`` draws the first ``BPMNDiagram``'s first plane of a :class:`BpmnModel`: a pure
function, the same model always gives the same bytes, and no model makes it raise.

Every DI shape with usable bounds (four finite numbers) becomes exactly one SVG element with
``class="shape"`` and ``data-element`` (the ``bpmnElement`` as written); every DI edge with at
least two usable waypoints exactly one with ``class="edge"``. Shapes without usable bounds and
edges with fewer than two usable waypoints are skipped (not drawn, not counted). How a shape is
drawn follows the type of the element its ``bpmnElement`` names (looked up verbatim, then without
a prefix); a shape naming no element is a plain rectangle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import escape, quoteattr

from bpmn.geometry import numbers
from bpmn.model import BpmnModel, DiEntry, Element
from bpmn.qnames import local_name, xml_text

__all__ = ["thumbnail_svg"]

_SVG_NS: Final = "http://www.w3.org/2000/svg"
_MARGIN: Final = 10.0  # diagram units around the drawing
_NAME_LIMIT: Final = 30
_FONT_SIZE: Final = 11.0  # diagram units
_ARROW_ID: Final = "bpmn-thumbnail-arrow"
_STROKE: Final = "#333"

_ACTIVITIES: Final = frozenset(
    {"task", "subProcess", "transaction", "adHocSubProcess", "callActivity"}
)
_CONTAINERS: Final = frozenset({"participant", "lane"})
_ARTIFACTS: Final = frozenset(
    {
        "dataObject",
        "dataObjectReference",
        "dataStore",
        "dataStoreReference",
        "dataInput",
        "dataOutput",
        "textAnnotation",
        "group",
    }
)
_DASHED_EDGES: Final = frozenset(
    {"messageFlow", "association", "dataInputAssociation", "dataOutputAssociation"}
)
_ARROW_EDGES: Final = frozenset(
    {"sequenceFlow", "messageFlow", "dataInputAssociation", "dataOutputAssociation"}
)


@dataclass(frozen=True, slots=True)
class _Shape:
    key: str
    ref: str
    kind: str  # local name of the semantic element's type, "" when it names none
    name: str
    box: tuple[float, float, float, float]  # x, y, w, h with w, h >= 0


@dataclass(frozen=True, slots=True)
class _Edge:
    key: str
    ref: str
    kind: str
    points: tuple[tuple[float, float], ...]


def thumbnail_svg(model: BpmnModel, *, max_width: int = 480, max_height: int = 320) -> bytes:
    """The first plane of ``model`` as a self-contained SVG, fit into ``max_width`` x
    ``max_height`` pixels (each at least 1), as UTF-8 bytes."""
    max_w = max(1, int(max_width))
    max_h = max(1, int(max_height))
    shapes, edges = _contents(model)

    xs: list[float] = []
    ys: list[float] = []
    for shape in shapes:
        x, y, w, h = shape.box
        xs += (x, x + w)
        ys += (y, y + h)
    for edge in edges:
        for px, py in edge.points:
            xs.append(px)
            ys.append(py)
    view = _view_box(xs, ys)
    if view is None:
        shapes, edges = [], []
        view = (0.0, 0.0, float(max_w), float(max_h))
    vx, vy, vw, vh = view
    scale = min(max_w / vw, max_h / vh)
    width = min(max_w, max(1, round(vw * scale)))
    height = min(max_h, max(1, round(vh * scale)))
    # One screen pixel in diagram units, so lines stay visible whatever the scale.
    unit = 1.0 / scale if scale > 0 else math.inf
    stroke = max(1.0, unit) if math.isfinite(unit) else 1.0

    out: list[str] = [
        f'<svg xmlns="{_SVG_NS}" width="{width}" height="{height}" '
        f'viewBox="{_n(vx)} {_n(vy)} {_n(vw)} {_n(vh)}" preserveAspectRatio="xMidYMid meet">',
        "<defs>"
        f'<marker id="{_ARROW_ID}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="5" '
        'markerHeight="5" orient="auto-start-reverse">'
        f'<path d="M0,0L10,5L0,10z" fill="{_STROKE}" stroke="none"/>'
        "</marker></defs>",
        f'<g fill="none" stroke="{_STROKE}" stroke-width="{_n(stroke)}" '
        'stroke-linejoin="round" font-family="sans-serif">',
    ]
    out.extend(_shape_svg(shape, stroke) for shape in shapes)
    out.extend(_edge_svg(edge, stroke) for edge in edges)
    out.append("</g></svg>\n")
    return "".join(out).encode("utf-8")


def _contents(model: BpmnModel) -> tuple[list[_Shape], list[_Edge]]:
    """The drawable shapes (background first) and edges of the first plane, in a fixed order."""
    plane = _first_plane(model)
    if plane is None:
        return [], []
    ranked_shapes: list[tuple[int, str, str, _Shape]] = []
    edges: list[tuple[str, str, _Edge]] = []
    for key, entry in model.di.items():
        if entry.parent != plane:
            continue
        tag = local_name(entry.type)
        ref = entry.element if isinstance(entry.element, str) else ""
        element = _resolve(model, ref)
        kind = local_name(element.type) if element is not None else ""
        order = entry.order if isinstance(entry.order, str) else ""
        if tag == "BPMNShape":
            box = _box(entry)
            if box is None:
                continue
            name = element.attrs.get("name", "") if element is not None else ""
            shape = _Shape(key, ref, kind, name if isinstance(name, str) else "", box)
            ranked_shapes.append((_layer(kind, entry), order, key, shape))
        elif tag == "BPMNEdge":
            points = _points(entry)
            if len(points) >= 2:
                edges.append((order, key, _Edge(key, ref, kind, points)))
    ranked_shapes.sort(key=lambda item: item[:3])
    edges.sort(key=lambda item: item[:2])
    return [item[3] for item in ranked_shapes], [item[2] for item in edges]


def _first_plane(model: BpmnModel) -> str | None:
    diagrams = _children(model, "", "BPMNDiagram")
    for diagram in diagrams:
        planes = _children(model, diagram, "BPMNPlane")
        if planes:
            return planes[0]
    return None


def _children(model: BpmnModel, parent: str, tag: str) -> list[str]:
    found = [
        (entry.order if isinstance(entry.order, str) else "", key)
        for key, entry in model.di.items()
        if entry.parent == parent and local_name(str(entry.type)) == tag
    ]
    return [key for _, key in sorted(found)]


def _resolve(model: BpmnModel, ref: str) -> Element | None:
    if not ref:
        return None
    element = model.elements.get(ref)
    if element is None and ":" in ref:
        element = model.elements.get(ref.rpartition(":")[2])
    return element


def _layer(kind: str, entry: DiEntry) -> int:
    if kind == "participant":
        return 0
    if kind == "lane":
        return 1
    if kind == "group" or (_is_activity(kind) and entry.attrs.get("isExpanded") == "true"):
        return 2
    return 3


def _box(entry: DiEntry) -> tuple[float, float, float, float] | None:
    bounds = numbers(entry.bounds, 4)
    if bounds is None:
        return None
    x, y, w, h = bounds
    if w < 0:
        x, w = x + w, -w
    if h < 0:
        y, h = y + h, -h
    if not all(math.isfinite(value) for value in (x + w, y + h)):
        return None
    return x, y, w, h


def _points(entry: DiEntry) -> tuple[tuple[float, float], ...]:
    if not isinstance(entry.waypoints, list | tuple):
        return ()
    kept: list[tuple[float, float]] = []
    for item in entry.waypoints:
        point = numbers(item, 2)
        if point is not None:
            kept.append((point[0], point[1]))
    return tuple(kept)


def _view_box(xs: list[float], ys: list[float]) -> tuple[float, float, float, float] | None:
    if not xs or not ys:
        return None
    x0, y0 = min(xs) - _MARGIN, min(ys) - _MARGIN
    w, h = max(xs) + _MARGIN - x0, max(ys) + _MARGIN - y0
    if not all(math.isfinite(value) for value in (x0, y0, w, h)) or w <= 0 or h <= 0:
        return None
    return x0, y0, w, h


def _is_activity(kind: str) -> bool:
    return kind in _ACTIVITIES or kind.endswith("Task")


def _shape_svg(shape: _Shape, stroke: float) -> str:
    x, y, w, h = shape.box
    kind = shape.kind
    head = f'class="shape" data-element={_attr(shape.ref)} data-type={_attr(kind)}'
    if kind.endswith("Event"):
        cx, cy, r = x + w / 2, y + h / 2, min(w, h) / 2
        circle = f'cx="{_n(cx)}" cy="{_n(cy)}"'
        if kind == "endEvent":
            thick = f'stroke-width="{_n(stroke * 2.5)}"'
            return f'<circle {head} {circle} r="{_n(r)}" fill="#fff" {thick}/>'
        if kind.startswith("intermediate") or kind == "boundaryEvent":
            inner = r * 0.8
            return (
                f'<g {head}><circle {circle} r="{_n(r)}" fill="#fff"/>'
                f'<circle {circle} r="{_n(inner)}"/></g>'
            )
        return f'<circle {head} {circle} r="{_n(r)}" fill="#fff"/>'
    if kind.endswith("Gateway"):
        cx, cy = x + w / 2, y + h / 2
        points = f"{_n(cx)},{_n(y)} {_n(x + w)},{_n(cy)} {_n(cx)},{_n(y + h)} {_n(x)},{_n(cy)}"
        return f'<polygon {head} points="{points}" fill="#fff"/>'
    rect = f'x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}"'
    if _is_activity(kind):
        radius = min(10.0, w / 2, h / 2)
        body = f'<rect {rect} rx="{_n(radius)}" fill="#fff"/>'
        label = _label(shape.name, x + w / 2, y + h / 2)
        return f"<g {head}>{body}{label}</g>"
    if kind in _CONTAINERS:
        return f"<rect {head} {rect}/>"
    if kind == "group":
        return f'<rect {head} {rect} stroke-dasharray="{_n(stroke * 6)} {_n(stroke * 3)}"/>'
    if kind in _ARTIFACTS:
        return f'<rect {head} {rect} fill="#fff"/>'
    return f'<rect {head} {rect} fill="#f4f4f4"/>'


def _label(name: str, cx: float, cy: float) -> str:
    text = " ".join(xml_text(name).split())
    if not text:
        return ""
    if len(text) > _NAME_LIMIT:
        text = text[: _NAME_LIMIT - 1].rstrip() + "\u2026"
    return (
        f'<text x="{_n(cx)}" y="{_n(cy)}" font-size="{_n(_FONT_SIZE)}" text-anchor="middle" '
        f'dominant-baseline="middle" fill="{_STROKE}" stroke="none">{escape(text)}</text>'
    )


def _edge_svg(edge: _Edge, stroke: float) -> str:
    points = " ".join(f"{_n(px)},{_n(py)}" for px, py in edge.points)
    extra = ""
    if edge.kind in _DASHED_EDGES:
        extra += f' stroke-dasharray="{_n(stroke * 5)} {_n(stroke * 3)}"'
    if edge.kind in _ARROW_EDGES:
        extra += f' marker-end="url(#{_ARROW_ID})"'
    return (
        f'<polyline class="edge" data-element={_attr(edge.ref)} data-type={_attr(edge.kind)} '
        f'points="{points}"{extra}/>'
    )


def _attr(value: str) -> str:
    return quoteattr(xml_text(value))


def _n(value: float) -> str:
    """A short, fixed spelling of a number: at most two decimals, no ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
