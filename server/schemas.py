"""The JSON shapes of the REST API: request bodies (unknown fields refused) and responses.

The same models produce ``/openapi.json``, so the documentation cannot drift
from what the handlers accept and return.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from persistence.models import DiagramRecord, DiagramSummary, VersionRecord

TITLE_MAX = 200


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", populate_by_name=False)


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def clean_title(value: str) -> str:
    """Titles are shown in lists and file names: trimmed, not blank, no control characters."""
    stripped = value.strip()
    if not stripped:
        raise ValueError("title must not be blank")
    if len(stripped) > TITLE_MAX:
        raise ValueError(f"title must be at most {TITLE_MAX} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in stripped):
        raise ValueError("title must not contain control characters")
    return stripped


def _clean_optional_title(value: str | None) -> str | None:
    return None if value is None else clean_title(value)


class CreateDiagramBody(_Body):
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    project_id: str | None = Field(None, min_length=1, max_length=128)
    xml: str | None = Field(
        None, description="BPMN 2.0 XML; omit it to start from a minimal diagram"
    )
    message: str | None = Field(None, max_length=1000)

    _title = field_validator("title")(_clean_optional_title)


class SaveDiagramBody(_Body):
    expected_version: int | None = Field(
        None, ge=1, description="The version this save is based on (or send If-Match)"
    )
    title: str | None = Field(None, min_length=1, max_length=TITLE_MAX)
    xml: str | None = None
    message: str | None = Field(None, max_length=1000)

    _title = field_validator("title")(_clean_optional_title)


class RestoreBody(_Body):
    expected_version: int | None = Field(
        None, ge=1, description="The current version the restore is based on (or If-Match)"
    )


class DiagramSummaryOut(_Out):
    id: str
    title: str
    project_id: str | None
    version: int
    element_count: int
    thumbnail_url: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, summary: DiagramSummary) -> DiagramSummaryOut:
        return cls(
            id=summary.id,
            title=summary.title,
            project_id=summary.project_id,
            version=summary.version,
            element_count=summary.element_count,
            thumbnail_url=summary.thumbnail_url,
            created_by=summary.created_by,
            created_at=summary.created_at,
            updated_at=summary.updated_at,
        )


class DiagramOut(DiagramSummaryOut):
    xml: str
    xml_bytes: int
    metadata: dict[str, Any]
    live_editors: int = Field(description="clients in the diagram's live room on this worker")

    @classmethod
    def of_record(cls, record: DiagramRecord, xml_text: str, *, live_editors: int) -> DiagramOut:
        base = DiagramSummaryOut.of(record.summary).model_dump()
        return cls(
            **base,
            xml=xml_text,
            xml_bytes=record.xml.size,
            metadata=dict(record.metadata),
            live_editors=live_editors,
        )


class DiagramListOut(_Out):
    data: list[DiagramSummaryOut]
    next_cursor: str | None
    has_more: bool


class VersionOut(_Out):
    rev: int
    author: str
    message: str | None
    created_at: datetime
    element_count: int
    xml_bytes: int
    metadata: dict[str, Any]

    @classmethod
    def of(cls, version: VersionRecord) -> VersionOut:
        return cls(
            rev=version.rev,
            author=version.author,
            message=version.message,
            created_at=version.created_at,
            element_count=version.element_count,
            xml_bytes=version.xml.size,
            metadata=dict(version.metadata),
        )


class VersionListOut(_Out):
    data: list[VersionOut]
    next_cursor: str | None
    has_more: bool


class CollaborateOut(_Out):
    """What a client needs to join the diagram's live room with y-websocket:
    ``new WebsocketProvider(url, diagramId, doc, {params: {token}})``."""

    token: str
    url: str
    role: str
    expires_at: datetime


class Problem(BaseModel):
    """RFC 9457 problem details, plus a stable ``code`` and the error's own fields."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
