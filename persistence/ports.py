"""The capabilities the service needs from storage, as protocols.

Room and HTTP code import these, never a driver. Every adapter passes the same
contract suite (``tests/contract``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from persistence.models import (
    DiagramRecord,
    DiagramSummary,
    NewContent,
    Page,
    Principal,
    VersionRecord,
)


class BlobStore(Protocol):
    """Opaque bytes under string keys (``diagrams/{id}/{version}.bpmn``)."""

    async def ensure_ready(self) -> None:
        """Create the bucket or folder when missing; check it is reachable."""

    async def put(self, key: str, data: bytes, *, content_type: str = "application/xml") -> None:
        """Write ``data`` under ``key``, replacing what was there."""

    async def get(self, key: str) -> bytes:
        """The whole blob; raises ``BlobNotFound``."""

    async def open(self, key: str, *, chunk_bytes: int = 65536) -> AsyncIterator[bytes]:
        """Start reading ``key`` and return its chunks.

        Raises ``BlobNotFound`` here, before any chunk, so an HTTP response can
        still answer 404 instead of a broken stream.
        """

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    async def exists(self, key: str) -> bool: ...


class DiagramStore(Protocol):
    """Diagrams, their versions and the outbox, always scoped by organization.

    Every method takes the caller's ``org_id`` and behaves as if diagrams of
    other organizations did not exist (``DiagramNotFound``).
    """

    async def migrate(self) -> None:
        """Bring the schema up to date; safe to run again and concurrently."""

    async def ensure_principal(self, principal: Principal) -> None:
        """Record the organization and user on first sight (idempotent)."""

    async def create(
        self,
        org_id: str,
        *,
        diagram_id: str,
        title: str,
        project_id: str | None,
        content: NewContent,
        author: str,
        message: str | None = None,
    ) -> DiagramRecord:
        """Insert a diagram at version 1, its first version row and a
        ``diagram.created`` outbox event, in one transaction."""

    async def get(self, org_id: str, diagram_id: str) -> DiagramRecord:
        """The live diagram; raises ``DiagramNotFound`` (also when soft-deleted)."""

    async def list(
        self,
        org_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        query: str | None = None,
        project_id: str | None = None,
    ) -> Page[DiagramSummary]:
        """Newest first by (updated_at, id), keyset-paginated; ``cursor`` is
        opaque and ``InvalidCursor`` when not one this store issued."""

    async def save(
        self,
        org_id: str,
        diagram_id: str,
        *,
        expected_version: int,
        author: str,
        title: str | None = None,
        content: NewContent | None = None,
        message: str | None = None,
    ) -> DiagramRecord:
        """Write version ``expected_version + 1`` only if the stored version is
        still ``expected_version``: the diagram row, a version row and a
        ``diagram.saved`` outbox event in one transaction. Content left out
        keeps the current XML. Raises ``VersionConflict`` or ``DiagramNotFound``."""

    async def save_crdt_state(
        self, org_id: str, diagram_id: str, *, version: int, crdt_state: bytes
    ) -> bytes:
        """Fix the first CRDT state of a version that had none (a diagram made
        from XML gets its element identities the first time a live room opens it).

        In one transaction, and only while the diagram is live, still at
        ``version`` and without a CRDT state: store ``crdt_state`` on the diagram
        row and on its version row ``version``. Returns the state now stored for
        that version: ``crdt_state``, or the one another caller stored first, so
        rooms opened at once agree. No new version, no outbox event, and
        ``updated_at`` stays. Raises ``VersionConflict`` when the diagram moved
        past ``version``, or ``DiagramNotFound``."""

    async def bump_epoch(self, org_id: str, diagram_id: str) -> int:
        """Start a new document epoch: ``crdt_epoch + 1`` and no CRDT state on the
        diagram row (the document will be rebuilt from the XML). Returns the new
        epoch; no new version, no outbox event, and ``updated_at`` stays.
        Raises ``DiagramNotFound``."""

    async def delete(self, org_id: str, diagram_id: str) -> None:
        """Soft delete; versions stay for audit. Raises ``DiagramNotFound``."""

    async def list_versions(
        self, org_id: str, diagram_id: str, *, limit: int, cursor: str | None = None
    ) -> Page[VersionRecord]:
        """Newest first; ``DiagramNotFound`` for a missing or deleted diagram."""

    async def get_version(self, org_id: str, diagram_id: str, rev: int) -> VersionRecord:
        """One version; raises ``DiagramNotFound`` or ``VersionNotFound``."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the database cannot be reached."""
