"""Where a live room's document comes from: the latest version's CRDT state plus
the room's update log after the position that version includes.

A diagram that has XML but no CRDT state yet (created or saved through REST) is
turned into a document through the BPMN model once, and that state is stored
for its version, so element identities are fixed from then on: every worker
that opens the room afterwards starts from the same state, never from XML.

The log replay brings back every update accepted after that version, including
those of a process that crashed before writing its next version. A room whose log
cannot be read does not open (``Unavailable``): opening without it and writing a
version would let the log be trimmed past updates the version lacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycrdt import Doc

from bpmn.document import load
from bpmn.parse import parse
from core.errors import DocumentReset, Unavailable, VersionConflict
from persistence.content import read_xml
from persistence.ports import BlobStore, DiagramStore
from persistence.update_log import LogEntry, UpdateLog

if TYPE_CHECKING:
    from server.fanout import Fanout

log = logging.getLogger(__name__)

_LOAD_ATTEMPTS = 3


def room_key(org_id: str, diagram_id: str, epoch: int) -> str:
    """Rooms are per diagram and document epoch; the org rides along so the loader can
    scope its queries. A new epoch (a rebuilt document) opens a new room, so nobody
    joins a document older than their token."""
    return f"{org_id}/{diagram_id}/{epoch}"


def parse_room_key(key: str) -> tuple[str, str, int]:
    org_id, diagram_id, epoch = key.rsplit("/", 2)
    return org_id, diagram_id, int(epoch)


@dataclass(frozen=True, slots=True)
class Opened:
    """A room's document as it opened: from ``version``'s ``state``, up to ``log_position``."""

    key: str
    version: int
    state: bytes
    log_position: str | None
    replayed: int  # log entries applied on top of the version


class DocumentLoader:
    def __init__(
        self,
        store: DiagramStore,
        blobs: BlobStore,
        update_log: UpdateLog,
        *,
        xml_limits: dict[str, int],
        on_loaded: Callable[[Opened], None] | None = None,
        fanout: Fanout | None = None,
    ) -> None:
        self._on_loaded = on_loaded
        self._fanout = fanout
        self._store = store
        self._blobs = blobs
        self._log = update_log
        self._xml_limits = xml_limits

    async def __call__(self, key: str) -> Doc[Any]:
        """The document of the room ``key`` (the registry's loader); tells ``on_loaded``.

        With other workers, the room's bus channel is subscribed *before* loading, so
        whatever they publish meanwhile is applied once the document exists.
        """
        if self._fanout is not None:
            await self._fanout.opening(key)
        try:
            doc, opened = await self.open(key)
        except BaseException:
            if self._fanout is not None:
                await self._fanout.closed(key)
            raise
        if self._fanout is not None:
            self._fanout.loaded(key, doc)
        if self._on_loaded is not None:
            self._on_loaded(opened)
        return doc

    async def open(self, key: str) -> tuple[Doc[Any], Opened]:
        """The room's document and where it came from, without telling anyone."""
        org_id, diagram_id, epoch = parse_room_key(key)
        for attempt in range(_LOAD_ATTEMPTS):
            record = await self._store.get(org_id, diagram_id)
            if record.crdt_epoch != epoch:
                raise DocumentReset(
                    "the document was reset; reload it", currentEpoch=record.crdt_epoch
                )
            if record.crdt_state is not None:
                return await self._opened(
                    key, record.summary.version, record.crdt_state, record.log_position
                )
            xml = await read_xml(self._blobs, record.xml)
            model = await asyncio.to_thread(parse, xml, **self._xml_limits)
            state = load(model).get_update()
            try:
                stored = await self._store.save_crdt_state(
                    org_id, diagram_id, version=record.summary.version, crdt_state=state
                )
            except VersionConflict:
                # A save landed while we parsed: start again from the new version.
                log.info("diagram %s moved on while its room opened (try %d)", diagram_id, attempt)
                continue
            return await self._opened(key, record.summary.version, stored, record.log_position)
        raise Unavailable("the diagram changed repeatedly while its room opened; try again")

    async def _opened(
        self, key: str, version: int, state: bytes, position: str | None
    ) -> tuple[Doc[Any], Opened]:
        doc = doc_from_state(state)
        entries = await self._log.read_after(key, position)
        position = replay(doc, entries, position, key=key)
        if entries:
            log.info(
                "room %s replayed %d logged updates after version %d", key, len(entries), version
            )
        return doc, Opened(key, version, state, position, len(entries))


def replay(doc: Doc[Any], entries: list[LogEntry], position: str | None, *, key: str) -> str | None:
    """Apply logged updates to ``doc``; returns the position it now includes."""
    for entry in entries:
        try:
            doc.apply_update(entry.update)
        except (ValueError, RuntimeError):
            # Every entry was applied by a room before it was logged, so this is damage
            # in the log itself: skip the entry rather than keep the room shut for good.
            log.error("room %s: logged update at %s does not apply; skipped", key, entry.position)
        position = entry.position
    return position


def doc_from_state(state: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    return doc
