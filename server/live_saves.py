"""A REST save of new XML into a diagram that has a CRDT document: folded into it.

The saved XML becomes version N+1 as sent. Its CRDT state is version N's state with
the save folded in as a minimal set of changes (elements added, removed, attributes
changed), so element identities stay and clients holding the document never need
to reload, and the state stays exactly what the XML says: a version's state always
renders to its XML.

When a room is open on this worker, the very same update is applied to the live
document once the save won: editors see it live and keep their concurrent work,
and the room rebases on N+1. Their work that no version holds yet stays pending
(in the room and the update log, after the position version N+1 records) and goes
into the next live version. A diagram without a CRDT state yet (never opened live)
stores the XML as it is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc

from bpmn.diff import fold
from bpmn.document import read
from bpmn.parse import parse
from rooms.room import Room
from server.documents import doc_from_state, room_key
from server.services import Services


@dataclass(frozen=True, slots=True)
class PreparedFold:
    key: str
    state: bytes  # version N's state with the save folded in, stored with N+1
    update: bytes  # the fold itself, as one update on top of version N's state
    log_position: str | None  # what N's state includes of the update log; so does N+1's


async def prepare_fold(
    services: Services, org_id: str, diagram_id: str, expected_version: int, xml: bytes
) -> PreparedFold | None:
    """The fold of ``xml`` into the diagram's document, or None when it has none yet
    (or the save is already stale: the store will answer 409)."""
    record = await services.store.get(org_id, diagram_id)
    if record.summary.version != expected_version or record.crdt_state is None:
        return None
    model = await asyncio.to_thread(parse, xml, **services.limits.xml_limits())
    doc = doc_from_state(record.crdt_state)
    before = doc.get_state()
    fold(doc, model, base=read(doc))
    return PreparedFold(
        key=room_key(org_id, diagram_id, record.crdt_epoch),
        state=doc.get_update(),
        update=doc.get_update(before),
        log_position=record.log_position,
    )


async def apply_fold(
    services: Services, prepared: PreparedFold, *, version: int, user_id: str
) -> None:
    """After the save committed as ``version``: the live room, if open here, takes it."""
    room: Room | None = services.rooms.room(prepared.key)
    if room is None:
        # Not open here; maybe on another worker: log and publish the fold for it. A room
        # opening later starts from version N+1 anyway.
        await services.journal.share(prepared.key, prepared.update)
        return
    services.snapshots.rebased(
        prepared.key, version=version, state=prepared.state, log_position=prepared.log_position
    )
    await room.change(lambda doc: _apply(doc, prepared.update), user_id=user_id)


def _apply(doc: Doc[Any], update: bytes) -> None:
    doc.apply_update(update)
