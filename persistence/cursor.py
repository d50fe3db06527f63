"""Opaque keyset cursors for the list endpoints.

A cursor is the sort key of the last item a page returned, as urlsafe base64 of
a small JSON object. Clients must treat it as opaque; anything that does not
decode to the expected shape is an :class:`~core.errors.InvalidCursor`, never a
driver error further down.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import orjson

from core.errors import InvalidCursor

# Far above any cursor this module issues; refusing longer input early keeps a
# hostile query string from costing a large decode.
_MAX_CURSOR_CHARS = 256

_DIAGRAMS = "d"
_VERSIONS = "v"


def encode_diagram_cursor(updated_at: datetime, diagram_id: str) -> str:
    """The position after the diagram with this ``(updated_at, id)``."""
    if updated_at.tzinfo is None:
        raise ValueError("cursor timestamps must be timezone-aware")
    return _encode({"k": _DIAGRAMS, "u": updated_at.isoformat(), "i": diagram_id})


def decode_diagram_cursor(cursor: str) -> tuple[datetime, str]:
    data = _decode(cursor)
    if data.get("k") != _DIAGRAMS or set(data) != {"k", "u", "i"}:
        raise InvalidCursor()
    raw_time, raw_id = data["u"], data["i"]
    if not isinstance(raw_time, str) or not isinstance(raw_id, str):
        raise InvalidCursor()
    try:
        updated_at = datetime.fromisoformat(raw_time)
        diagram_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise InvalidCursor() from None
    if updated_at.tzinfo is None:
        raise InvalidCursor()
    return updated_at, diagram_id


def encode_version_cursor(rev: int) -> str:
    """The position after version ``rev`` (lists go newest first)."""
    return _encode({"k": _VERSIONS, "r": rev})


def decode_version_cursor(cursor: str) -> int:
    data = _decode(cursor)
    if data.get("k") != _VERSIONS or set(data) != {"k", "r"}:
        raise InvalidCursor()
    rev = data["r"]
    # bool is an int subclass; ``true`` is not a revision.
    if not isinstance(rev, int) or isinstance(rev, bool) or not 1 <= rev <= 2**31 - 1:
        raise InvalidCursor()
    return rev


def _encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode("ascii")


def _decode(cursor: str) -> dict[str, Any]:
    if not cursor or len(cursor) > _MAX_CURSOR_CHARS:
        raise InvalidCursor()
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        data = orjson.loads(raw)
    except (UnicodeEncodeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidCursor() from None
    if not isinstance(data, dict):
        raise InvalidCursor()
    return data
