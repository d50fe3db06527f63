"""Thumbnails: the outbox handler that draws a diagram after it was created or saved,
and where a thumbnail is kept and served.

The handler draws the diagram as it is when the event is handled, not the
version the event names: a late event then costs nothing (the thumbnail already
shows that version or a newer one), and an event for version n handled after
version n+1 was written draws n+1 at once. The diagram's row remembers the
version its thumbnail shows and only ever moves it forward, so handling an
event twice, or two processors drawing one diagram, never shows an older picture.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar, Final

from core.errors import DiagramNotFound, NotFound
from persistence.content import read_xml
from persistence.outbox import Outbox, OutboxEvent
from persistence.ports import BlobStore, DiagramStore
from persistence.rows import EVENT_CREATED, EVENT_SAVED
from server.cpu_pool import CpuPool, ThreadCpuPool
from server.render_jobs import draw_thumbnail

SVG_MEDIA_TYPE: Final = "image/svg+xml"

# The served URL names the version, so a client or proxy caching it by URL sees a new
# thumbnail as a new resource; the endpoint itself always serves the latest.
_URL_VERSION = re.compile(r"[?&]v=([1-9][0-9]{0,9})(?:&|$)")


class ThumbnailNotFound(NotFound):
    code = "thumbnail_not_found"
    title = "Thumbnail not found"

    def __init__(self, diagram_id: str) -> None:
        super().__init__(
            f"diagram {diagram_id!r} has no thumbnail yet; it is drawn shortly after each save",
            diagramId=diagram_id,
        )


def thumbnail_key(diagram_id: str, version: int) -> str:
    return f"thumbnails/{diagram_id}/{version}.svg"


def thumbnail_url(diagram_id: str, version: int) -> str:
    return f"/api/diagrams/{diagram_id}/thumbnail.svg?v={version}"


def thumbnail_version(url: str | None) -> int | None:
    """The version a stored ``thumbnail_url`` shows; None when there is none."""
    if not url:
        return None
    match = _URL_VERSION.search(url)
    return int(match.group(1)) if match else None


class Thumbnailer:
    """The outbox handler for ``diagram.created`` and ``diagram.saved``."""

    EVENTS: ClassVar[tuple[str, ...]] = (EVENT_CREATED, EVENT_SAVED)

    def __init__(
        self,
        store: DiagramStore,
        blobs: BlobStore,
        outbox: Outbox,
        *,
        xml_limits: Mapping[str, int],
        on_changed: Callable[[str], Awaitable[None]] | None = None,
        cpu: CpuPool | None = None,
    ) -> None:
        self._cpu = cpu or ThreadCpuPool()
        self._store = store
        self._blobs = blobs
        self._outbox = outbox
        self._xml_limits = dict(xml_limits)
        self._on_changed = on_changed

    async def __call__(self, event: OutboxEvent) -> None:
        org_id, diagram_id = event.org_id, event.diagram_id
        try:
            record = await self._store.get(org_id, diagram_id)
        except DiagramNotFound:
            return  # deleted since: nobody will look at its thumbnail
        version = record.summary.version
        shown = thumbnail_version(record.summary.thumbnail_url)
        if shown is not None and shown >= version:
            return  # drawn already (a repeated or late event)
        xml = await read_xml(self._blobs, record.xml)
        # Parsing and drawing a large diagram takes a while: keep it off the event loop.
        svg = await self._cpu.run(draw_thumbnail, xml, self._xml_limits)
        await self._blobs.put(thumbnail_key(diagram_id, version), svg, content_type=SVG_MEDIA_TYPE)
        moved = await self._outbox.set_thumbnail(
            org_id, diagram_id, version=version, url=thumbnail_url(diagram_id, version)
        )
        if moved and self._on_changed is not None:
            await self._on_changed(org_id)
