"""At start: versions for rooms whose update log holds updates no version has.

After a crash, a room's last updates are in its log. A client reopening the room
replays them, but nobody may come back: so each worker, once started, looks for
rooms with logged updates that are not open here, rebuilds their documents
(latest version + log) and writes them as versions, under the usual version
check (several workers doing this at once cost extra reads, never a lost or
duplicated write). The log of a diagram that was deleted, or whose document was
rebuilt, belongs to nothing any more and is dropped.
"""

from __future__ import annotations

import logging

from core.errors import DiagramNotFound, DocumentReset
from persistence.update_log import UpdateLog
from rooms.registry import RoomRegistry
from server.documents import DocumentLoader
from server.snapshots import Snapshotter

log = logging.getLogger(__name__)


async def recover_unsaved_rooms(
    update_log: UpdateLog, loader: DocumentLoader, snapshots: Snapshotter, rooms: RoomRegistry
) -> int:
    """Write a version for every room with unsaved logged updates; returns how many."""
    recovered = 0
    for key in await update_log.rooms():
        if rooms.room(key) is not None:
            continue  # open here: its own snapshots take care of it
        try:
            doc, opened = await loader.open(key)
        except (DiagramNotFound, DocumentReset):
            await _drop(update_log, key)
            continue
        except Exception:
            log.warning("could not reopen room %s to recover it", key, exc_info=True)
            continue
        if opened.replayed and await snapshots.recover(doc, opened):
            recovered += 1
    if recovered:
        log.info("recovered %d rooms' unsaved updates from the update log", recovered)
    return recovered


async def _drop(update_log: UpdateLog, key: str) -> None:
    entries = await update_log.read_after(key, None)
    if entries:
        log.info("dropping %d logged updates of room %s: its document is gone", len(entries), key)
        await update_log.trim(key, entries[-1].position)
