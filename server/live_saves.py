"""A REST save into a diagram whose room is live: folded into the live document.

The saved XML becomes version N+1 as sent, and the same change is folded into the
room's document as a minimal set of CRDT changes, so editors see it live and keep
their concurrent work on everything the save did not change. The fold is based
on the CRDT state of the version the save was based on, so only what the saver
changed is written.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bpmn.diff import fold
from bpmn.document import read
from bpmn.model import BpmnModel
from bpmn.parse import parse
from core.errors import VersionNotFound
from rooms.room import Room
from server.documents import doc_from_state, room_key
from server.services import Services


@dataclass(frozen=True, slots=True)
class PreparedFold:
    room: Room
    key: str
    model: BpmnModel
    base: BpmnModel | None
    state: bytes  # the live document with the save folded in, stored with the new version


async def prepare_fold(
    services: Services, org_id: str, diagram_id: str, expected_version: int, xml: bytes
) -> PreparedFold | None:
    """The fold of ``xml`` into the diagram's live room, or None when no room is live
    (or the save is already stale: the store will answer 409)."""
    record = await services.store.get(org_id, diagram_id)
    if record.summary.version != expected_version:
        return None
    key = room_key(org_id, diagram_id, record.crdt_epoch)
    room = services.rooms.room(key)
    if room is None:
        return None
    model = await asyncio.to_thread(parse, xml, **services.limits.xml_limits())
    try:
        base_state = (
            await services.store.get_version(org_id, diagram_id, expected_version)
        ).crdt_state
    except VersionNotFound:
        base_state = None
    base = read(doc_from_state(base_state)) if base_state is not None else None
    # Fold into a copy first: the live document changes only once the save has won.
    copy = doc_from_state(room.doc.get_update())
    fold(copy, model, base=base)
    return PreparedFold(room=room, key=key, model=model, base=base, state=copy.get_update())


async def apply_fold(
    services: Services, prepared: PreparedFold, *, version: int, user_id: str
) -> None:
    """After the save committed as ``version``: fold it into the live document."""
    services.snapshots.rebased(prepared.key, version=version, state=prepared.state)
    await prepared.room.change(
        lambda doc: fold(doc, prepared.model, base=prepared.base), user_id=user_id
    )
