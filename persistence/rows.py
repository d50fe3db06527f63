"""What the SQL adapters share that is not SQL: input checks, search words and
row -> record mapping.

Both schemas use the same column names, so one set of mapping functions serves
SQLite rows and asyncpg records; the small type differences (ISO text vs
datetime, uuid vs text, JSON text) are absorbed here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson

from core.errors import CollabError, DiagramNotFound, InvalidInput
from persistence.models import DiagramRecord, DiagramSummary, Page, StoredXml, VersionRecord

T = TypeVar("T")

MAX_PAGE_LIMIT = 1000

# Search is on title words; a bounded number of bounded words keeps the query
# cheap whatever the client sends.
_MAX_SEARCH_WORDS = 8
_MAX_SEARCH_WORD_CHARS = 64
# Letters and digits only: no operator or quoting character of to_tsquery (or
# anything else) can survive into a search word.
_WORD = re.compile(r"[^\W_]+")


class Row(Protocol):
    """A result row addressable by column name (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: str, /) -> Any: ...


# --- input checks ---------------------------------------------------------------------------


# SQL shared by both stores for a save that writes new content: new XML without a CRDT
# state replaces a document clients may hold (the next room is built from XML with new
# element identities), so the epoch moves and clients holding the old one reload.
EPOCH_AFTER_NEW_XML = (
    "CASE WHEN {new_state} IS NULL AND crdt_state IS NOT NULL "
    "THEN crdt_epoch + 1 ELSE crdt_epoch END"
)


def canonical_id(diagram_id: str) -> str | None:
    """The canonical text form of a diagram id, or None when it is not a UUID.

    Callers turn None into ``DiagramNotFound``: an id that cannot exist is simply
    not found, never a driver error about a malformed uuid.
    """
    try:
        return str(uuid.UUID(diagram_id))
    except (ValueError, TypeError, AttributeError):
        return None


def existing_id(diagram_id: str) -> str:
    """The canonical form of an id to look up; a non-UUID cannot exist."""
    canonical = canonical_id(diagram_id)
    if canonical is None:
        raise DiagramNotFound(diagram_id)
    return canonical


def new_diagram_id(diagram_id: str) -> str:
    """The canonical id for a diagram being created; refuses a non-UUID."""
    canonical = canonical_id(diagram_id)
    if canonical is None:
        raise InvalidInput(f"diagram id {diagram_id!r} is not a UUID", diagramId=diagram_id)
    return canonical


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_LIMIT}", limit=limit)
    return limit


def int4(value: int) -> int:
    """``value`` clamped to a 32-bit signed integer, the range of versions and revisions.

    A number outside it cannot match any row; clamping keeps the driver from
    raising an encoding error for what is simply "no such version".
    """
    return max(min(value, 2**31 - 1), -(2**31))


def dump_json(value: Mapping[str, Any]) -> str:
    """JSON text of an object; a value JSON cannot hold is the caller's mistake."""
    try:
        return orjson.dumps(dict(value)).decode()
    except TypeError as exc:
        raise InvalidInput(f"metadata is not JSON-serialisable: {exc}") from None


# --- outbox -------------------------------------------------------------------------------

EVENT_CREATED = "diagram.created"
EVENT_SAVED = "diagram.saved"
EVENT_DELETED = "diagram.deleted"


def event_payload(diagram_id: str, *, version: int, author: str | None = None) -> str:
    """The JSON payload of an outbox event about a diagram."""
    payload: dict[str, Any] = {"diagramId": diagram_id, "version": version}
    if author is not None:
        payload["author"] = author
    return dump_json(payload)


# --- title search ---------------------------------------------------------------------------


def search_words(query: str | None) -> list[str]:
    """Lower-cased letter/digit runs of a search query, bounded in number and length.

    Both adapters match every word as a prefix of some word of the title; an
    empty list means no title filter.
    """
    if not query:
        return []
    words = [w[:_MAX_SEARCH_WORD_CHARS] for w in _WORD.findall(query.lower())]
    return list(dict.fromkeys(words))[:_MAX_SEARCH_WORDS]


def title_matches(title: str, words: Sequence[str]) -> bool:
    """True when every word starts some word of ``title`` (case-insensitive)."""
    title_words = _WORD.findall(title.lower())
    return all(any(t.startswith(w) for t in title_words) for w in words)


# --- row -> record --------------------------------------------------------------------------


def summary_from_row(row: Row) -> DiagramSummary:
    return DiagramSummary(
        id=str(row["id"]),
        org_id=row["org_id"],
        project_id=row["project_id"],
        title=row["title"],
        version=row["version"],
        element_count=row["element_count"],
        thumbnail_url=row["thumbnail_url"],
        created_by=row["created_by"],
        created_at=utc_datetime(row["created_at"]),
        updated_at=utc_datetime(row["updated_at"]),
    )


def diagram_from_row(row: Row) -> DiagramRecord:
    return DiagramRecord(
        summary=summary_from_row(row),
        xml=stored_xml_from_row(row),
        crdt_state=optional_bytes(row["crdt_state"]),
        crdt_epoch=row["crdt_epoch"],
        metadata=json_object(row["metadata"]),
        log_position=row["log_position"],
    )


def version_from_row(row: Row) -> VersionRecord:
    return VersionRecord(
        diagram_id=str(row["diagram_id"]),
        rev=row["rev"],
        author=row["author"],
        message=row["message"],
        created_at=utc_datetime(row["created_at"]),
        element_count=row["element_count"],
        xml=stored_xml_from_row(row),
        crdt_state=optional_bytes(row["crdt_state"]),
        metadata=json_object(row["metadata"]),
        log_position=row["log_position"],
    )


def stored_xml_from_row(row: Row) -> StoredXml:
    return StoredXml(
        inline=optional_bytes(row["xml_inline"]),
        blob_key=row["xml_blob_key"],
        size=row["xml_size"],
    )


def page_of(
    rows: Sequence[Row],
    limit: int,
    item: Callable[[Row], T],
    cursor_after: Callable[[T], str],
) -> Page[T]:
    """A page from up to ``limit + 1`` rows: the extra row only says there is more."""
    items = [item(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items=items, next_cursor=cursor_after(items[-1]) if more else None)


def utc_datetime(value: object) -> datetime:
    """An aware UTC datetime from a driver value (datetime, or ISO-8601 text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise CollabError(f"unexpected timestamp value {value!r} in the store")
    if value.tzinfo is None:
        # The schemas only ever write UTC; a naive value can only mean UTC.
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC text with microseconds: text order is time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def json_object(value: object) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        value = orjson.loads(value)
    if not isinstance(value, dict):
        raise CollabError(f"unexpected metadata value {value!r} in the store")
    return value


def optional_bytes(value: object) -> bytes | None:
    """A nullable binary column as bytes, whatever buffer type the driver returns."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise CollabError(f"unexpected binary value of type {type(value).__name__} in the store")
