"""The CPU-heavy background work, as pure functions of bytes: what the CPU pool's worker
process runs (snapshot rendering, content digests, thumbnails).

Everything here takes and returns plain picklable values, imports no server state and
touches no I/O, so it runs the same in a thread of the server or in another process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from pycrdt import Doc

from bpmn.document import read
from bpmn.model import BpmnModel
from bpmn.parse import parse
from bpmn.render import render
from bpmn.summary import summary
from bpmn.thumbnail import thumbnail_svg


@dataclass(frozen=True, slots=True)
class RenderedState:
    """A CRDT state rendered as a version's content."""

    xml: bytes
    element_count: int
    digest: bytes  # of the model's content: equal for equal content, see content_digest


def render_state(state: bytes) -> RenderedState:
    model = read_state(state)
    return RenderedState(render(model), summary(model).element_count, content_digest(model))


def read_state(state: bytes) -> BpmnModel:
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    return read(doc)


def state_digest(state: bytes) -> bytes:
    return content_digest(read_state(state))


def content_digest(model: BpmnModel) -> bytes:
    """A digest of everything a rendering depends on (parse warnings are not content).

    Keys are sorted before hashing because equal dicts may hold their keys in another
    order (a Y.Map iterates in no stable order), and equal content must digest equally.
    """
    content = (model.tag, model.definitions, model.namespaces, model.elements, model.di, model.raw)
    encoded = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(encoded, digest_size=32).digest()


def parse_xml(xml: bytes, limits: dict[str, int]) -> BpmnModel:
    return parse(xml, **limits)


def draw_thumbnail(xml: bytes, limits: dict[str, int]) -> bytes:
    return thumbnail_svg(parse(xml, **limits))
