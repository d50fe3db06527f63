"""Plain records the stores take and return. No driver types cross this line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

Role = Literal["editor", "viewer"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as its access token names it."""

    user_id: str
    org_id: str
    role: Role = "editor"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class NewContent:
    """XML to store as a diagram's next version, with what was derived from it."""

    xml: bytes
    element_count: int
    crdt_state: bytes | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # The update-log position ``crdt_state`` includes (a live room's snapshot or a
    # fold into it): the room's log is replayed after it and trimmed up to it.
    log_position: str | None = None


@dataclass(frozen=True, slots=True)
class DiagramSummary:
    id: str
    org_id: str
    project_id: str | None
    title: str
    version: int
    element_count: int
    thumbnail_url: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredXml:
    """Where a version's XML lives: inline bytes, or a key in the blob store."""

    inline: bytes | None
    blob_key: str | None
    size: int


@dataclass(frozen=True, slots=True)
class DiagramRecord:
    summary: DiagramSummary
    xml: StoredXml
    crdt_state: bytes | None
    # The document epoch: it moves only when the CRDT document is rebuilt from
    # the XML, so a client holding a document of an older epoch must reload.
    crdt_epoch: int
    metadata: Mapping[str, Any]
    log_position: str | None = None


@dataclass(frozen=True, slots=True)
class VersionRecord:
    diagram_id: str
    rev: int
    author: str
    message: str | None
    created_at: datetime
    element_count: int
    xml: StoredXml
    crdt_state: bytes | None
    metadata: Mapping[str, Any]
    log_position: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None
