"""Live rooms become versions: the snapshotter.

Per room: a snapshot after changes stop for ``idle_s``, at most ``max_interval_s``
apart while they go on, and when the room unloads. A snapshot renders the
document to BPMN XML and writes version N+1 through the store's one optimistic
save (XML, CRDT state, element count, metadata, version row, outbox event), so
it obeys exactly the rule a REST save does. A room that received no update
writes nothing, nor does a snapshot whose XML equals the stored XML.

On a version conflict the snapshotter refreshes: if the other write left the
document alone (a title-only save) it rebases and retries; if it replaced the
document (new epoch) this room is superseded and gives up, logged and counted.
Folding REST saves into live rooms, and the durable update log that makes a
crash lose nothing, come next (see the versions issue).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from pycrdt import Doc

from bpmn.document import read
from bpmn.render import render
from bpmn.summary import summary
from core.errors import VersionConflict
from persistence.content import read_xml
from persistence.models import NewContent
from persistence.ports import BlobStore, DiagramStore
from server.documents import parse_room_key

log = logging.getLogger(__name__)

_ATTEMPTS = 3
LIVE_EDIT_MESSAGE = "live edit"

DocLookup = Callable[[str], "Doc[Any] | None"]


@dataclass
class _Live:
    base_version: int
    stored_state: bytes | None
    editors: set[str] = field(default_factory=set)
    first_change_at: float | None = None
    timer: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class SnapshotMetrics:
    written: int = 0
    unchanged: int = 0
    conflicts: int = 0
    gave_up: int = 0
    failed: int = 0


class Snapshotter:
    def __init__(
        self,
        store: DiagramStore,
        blobs: BlobStore,
        *,
        idle_s: float,
        max_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._idle_s = idle_s
        self._max_interval_s = max_interval_s
        self._clock = clock
        self._live: dict[str, _Live] = {}
        self._docs: DocLookup = lambda key: None
        self._tasks: asyncio.TaskGroup | None = None
        self.metrics = SnapshotMetrics()

    async def __aenter__(self) -> Self:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        for live in self._live.values():
            if live.timer is not None:
                live.timer.cancel()
        assert self._tasks is not None
        await self._tasks.__aexit__(None, None, None)

    def attach(self, docs: DocLookup) -> None:
        """Where to find a room's document when its timer fires (the room registry)."""
        self._docs = docs

    # --- hooks ---------------------------------------------------------------------------------

    def loaded(self, key: str, *, version: int, state: bytes | None) -> None:
        """A room opened from ``version`` of its diagram."""
        self._live[key] = _Live(base_version=version, stored_state=state)

    def rebased(self, key: str, *, version: int, state: bytes) -> None:
        """A REST save was folded into the room as ``version``: later snapshots build on it."""
        live = self._live.get(key)
        if live is not None:
            live.base_version, live.stored_state = version, state

    async def updated(self, key: str, update: bytes, user_id: str | None) -> None:
        live = self._live.get(key)
        if live is None:
            return
        if user_id is not None:
            live.editors.add(user_id)
        now = self._clock()
        if live.first_change_at is None:
            live.first_change_at = now
        # Debounce: wait for a pause, but never past max_interval_s after the first change.
        deadline = live.first_change_at + self._max_interval_s
        delay = max(0.0, min(self._idle_s, deadline - now))
        if live.timer is not None:
            live.timer.cancel()
        assert self._tasks is not None
        live.timer = self._tasks.create_task(self._after(key, delay))

    async def unloaded(self, key: str, doc: Doc[Any]) -> None:
        live = self._live.get(key)
        if live is None:
            return
        if live.timer is not None:
            live.timer.cancel()
        try:
            await self.snapshot(key, doc)
        finally:
            self._live.pop(key, None)

    # --- snapshots -----------------------------------------------------------------------------

    async def _after(self, key: str, delay: float) -> None:
        await asyncio.sleep(delay)
        live = self._live.get(key)
        doc = self._docs(key)
        if live is None or doc is None:
            return
        live.timer = None
        try:
            await self.snapshot(key, doc)
        except Exception:
            self.metrics.failed += 1
            log.exception("snapshot of %s failed; the room keeps its edits", key)

    async def snapshot(self, key: str, doc: Doc[Any]) -> None:
        live = self._live.get(key)
        if live is None or live.first_change_at is None:
            return  # no update since the last version: opening a diagram never makes one
        async with live.lock:
            if live.first_change_at is None:
                return
            editors, live.editors, live.first_change_at = live.editors, set(), None
            model = read(doc)
            state = doc.get_update()
            xml = await asyncio.to_thread(render, model)
            await self._write(key, live, xml, state, summary(model).element_count, editors)

    async def _write(
        self, key: str, live: _Live, xml: bytes, state: bytes, elements: int, editors: set[str]
    ) -> None:
        org_id, diagram_id, epoch = parse_room_key(key)
        for _ in range(_ATTEMPTS):
            current = await self._store.get(org_id, diagram_id)
            if current.crdt_epoch != epoch:
                self._give_up(key, "the document was reset by another write")
                return
            if current.summary.version != live.base_version:
                self.metrics.conflicts += 1
                if current.crdt_state != live.stored_state:
                    self._give_up(key, f"version {current.summary.version} replaced the document")
                    return
                live.base_version = current.summary.version  # e.g. a title-only save: rebase
            if await read_xml(self._blobs, current.xml) == xml:
                self.metrics.unchanged += 1
                return
            author = sorted(editors)[0] if editors else "live"
            try:
                saved = await self._store.save(
                    org_id,
                    diagram_id,
                    expected_version=live.base_version,
                    author=author,
                    content=NewContent(
                        xml=xml,
                        element_count=elements,
                        crdt_state=state,
                        metadata={"source": "live", "editors": sorted(editors)},
                    ),
                    message=LIVE_EDIT_MESSAGE,
                )
            except VersionConflict:
                continue  # someone wrote between our read and our save: look again
            live.base_version, live.stored_state = saved.summary.version, state
            self.metrics.written += 1
            return
        self._give_up(key, "the version kept moving")

    def _give_up(self, key: str, why: str) -> None:
        self.metrics.gave_up += 1
        log.warning("snapshot of %s not written: %s", key, why)
