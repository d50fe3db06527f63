"""Where a version's XML goes: inline in the row, or the blob store when large."""

from __future__ import annotations

from collections.abc import AsyncIterator

from persistence.models import StoredXml
from persistence.ports import BlobStore


def blob_key_for(diagram_id: str, version: int) -> str:
    return f"diagrams/{diagram_id}/{version}.bpmn"


def plan_xml(diagram_id: str, version: int, xml: bytes, *, inline_max_bytes: int) -> StoredXml:
    """Decide the placement of ``xml`` without writing anything.

    Stores write the blob (see :func:`write_planned`) only after their
    conditional update has won, inside the same transaction, so a losing
    concurrent save can never overwrite the winner's blob under the same key.
    """
    if len(xml) > inline_max_bytes:
        return StoredXml(inline=None, blob_key=blob_key_for(diagram_id, version), size=len(xml))
    return StoredXml(inline=xml, blob_key=None, size=len(xml))


async def write_planned(blobs: BlobStore, planned: StoredXml, xml: bytes) -> None:
    if planned.blob_key is not None:
        await blobs.put(planned.blob_key, xml)


async def read_xml(blobs: BlobStore, stored: StoredXml) -> bytes:
    if stored.inline is not None:
        return stored.inline
    assert stored.blob_key is not None  # a row holds one or the other (schema CHECK)
    return await blobs.get(stored.blob_key)


async def open_xml(
    blobs: BlobStore, stored: StoredXml, *, chunk_bytes: int = 65536
) -> AsyncIterator[bytes]:
    """Chunks of the XML; raises ``BlobNotFound`` before the first chunk."""
    if stored.inline is not None:
        return _chunks(stored.inline, chunk_bytes)
    assert stored.blob_key is not None
    return await blobs.open(stored.blob_key, chunk_bytes=chunk_bytes)


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
