"""``GET /xml?fresh=1``: the very latest XML, including changes no version holds yet.

From the live room when one is open on this worker; otherwise from the stored CRDT
state plus the room's update log (what another worker or a crashed process
accepted and has not written as a version yet). ``None`` when the stored version
is already the latest, so the stored bytes are served as they are.
"""

from __future__ import annotations

import asyncio

from bpmn.document import read
from bpmn.render import render
from persistence.models import DiagramRecord
from server.documents import doc_from_state, replay, room_key
from server.services import Services


async def fresh_xml(services: Services, record: DiagramRecord) -> bytes | None:
    key = room_key(record.summary.org_id, record.summary.id, record.crdt_epoch)
    room = services.rooms.room(key)
    if room is not None:
        if not services.snapshots.pending(key):
            return None
        model = read(room.doc)  # on the event loop: the document is not thread-safe
    elif record.crdt_state is not None:
        entries = await services.update_log.read_after(key, record.log_position)
        if not entries:
            return None
        doc = doc_from_state(record.crdt_state)
        replay(doc, entries, record.log_position, key=key)
        model = read(doc)
    else:
        return None
    return await asyncio.to_thread(render, model)
