"""Live rooms become versions: the snapshotter.

Per room: a snapshot after changes stop for ``idle_s``, at most ``max_interval_s``
apart while they go on, and when the room unloads. A snapshot renders the
document to BPMN XML and writes version N+1 through the store's one optimistic
save (XML, CRDT state, element count, metadata, log position, version row, outbox
event), so it obeys exactly the rule a REST save does, and the database sees at
most one write per room per ``idle_s`` whatever the typing rate. A room that
received no update writes nothing, nor does a snapshot whose XML equals the
stored XML.

Each version records the update-log position its state includes (the last entry
appended before the state was taken: entries are applied before they are
appended, so every entry up to it is in the document). Once the version commits,
the log is trimmed up to that position.

On a version conflict the snapshotter refreshes: the other write's content is
folded into the live document (editors see it, and keep their work), the room
rebases on that version and the snapshot is tried again, a bounded number of
times; then it gives up, logged and counted, and the log keeps the updates. A
failing store (the database down) is retried with backoff; nothing is lost
meanwhile, the update log holds every accepted update.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Self

from pycrdt import Doc

from bpmn.diff import fold
from bpmn.model import BpmnModel
from core.errors import VersionConflict
from core.histogram import Histogram
from persistence.content import read_xml
from persistence.models import DiagramRecord, NewContent
from persistence.ports import BlobStore, DiagramStore
from persistence.update_log import UpdateLog, later, position_key
from server.cpu_pool import CpuPool, ThreadCpuPool
from server.documents import Opened, parse_room_key, replay
from server.render_jobs import RenderedState, parse_xml, read_state, render_state, state_digest
from server.snapshot_lock import LocalSnapshotLock, SnapshotLock

log = logging.getLogger(__name__)

LIVE_EDIT_MESSAGE = "live edit"
_RETRY_BASE_S = 0.5
_UNLOAD_RETRIES = 12
_FIRST_DEADLINE_SPREAD = 0.9
# Snapshots render and compare whole documents: a few at a time per worker keeps a wave of
# them (many rooms reaching their deadline together) from starving the event loop.
_CONCURRENT_SNAPSHOTS = 2

Edit = Callable[[Doc[Any]], object]
#: ``change(edit)`` runs ``edit`` on the live document as a server change (broadcast, logged).
Change = Callable[[Edit], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class LiveDoc:
    """What the snapshotter needs of an open room: its document and how to change it."""

    doc: Doc[Any]
    change: Change


RoomLookup = Callable[[str], LiveDoc | None]


@dataclass
class _Live:
    base_version: int
    stored_state: bytes | None
    # The content digest of a stored state, kept with that very state (compared by
    # identity, so it can never answer for another): saves reading it again to compare.
    stored_digest: tuple[bytes, bytes] | None = None
    log_position: str | None = None
    editors: set[str] = field(default_factory=set)
    recovered: bool = False  # holds updates replayed from the log, of unknown editors
    local_changes: bool = False  # pending changes made here (not only other workers')
    # Log positions of updates the document holds already, after log_position (appended
    # here or received over the bus), and the latest of those from other workers.
    held: set[str] = field(default_factory=set)
    remote_upto: str | None = None
    # How much of max_interval_s this room's first deadline comes early: rooms opened in
    # the same second (a server restart, a load test) would otherwise keep writing in the
    # same second, every interval. A random phase once spreads them for good.
    phase: float = field(default_factory=lambda: random.uniform(0, _FIRST_DEADLINE_SPREAD))
    first_change_at: float | None = None
    failures: int = 0
    retry_at: float | None = None  # after a failure: no attempt before this, however busy
    timer: asyncio.Task[None] | None = None
    # When the snapshot is due, and when the timer task wakes next. An update moves ``due``
    # later without touching the task: it wakes, sees the later time and sleeps on. One
    # task per idle period instead of a new task for each of ten updates a second.
    due: float = 0.0
    wakes_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class SnapshotMetrics:
    written: int = 0
    unchanged: int = 0
    conflicts: int = 0
    folded: int = 0
    gave_up: int = 0
    failed: int = 0
    trim_failures: int = 0
    busy: int = 0  # another worker held the room's snapshot lock
    duration_seconds: Histogram = field(default_factory=Histogram)  # written snapshots


class SnapshotBusy(Exception):
    """Another worker holds the room's snapshot lock."""


class Snapshotter:
    def __init__(
        self,
        store: DiagramStore,
        blobs: BlobStore,
        log: UpdateLog,
        *,
        lock: SnapshotLock | None = None,
        idle_s: float,
        max_interval_s: float,
        conflict_attempts: int = 5,
        xml_limits: dict[str, int] | None = None,
        cpu: CpuPool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cpu = cpu or ThreadCpuPool()
        self._blobs = blobs
        self._log = log
        self._lock = lock or LocalSnapshotLock()
        self._slots = asyncio.Semaphore(_CONCURRENT_SNAPSHOTS)
        self._idle_s = idle_s
        self._max_interval_s = max_interval_s
        self._attempts = conflict_attempts
        self._xml_limits = xml_limits or {}
        self._clock = clock
        self._live: dict[str, _Live] = {}
        self._unload_retries: dict[str, asyncio.Task[None]] = {}
        self._rooms: RoomLookup = lambda key: None
        self._tasks: asyncio.TaskGroup | None = None
        self._closing = False
        self.metrics = SnapshotMetrics()

    async def __aenter__(self) -> Self:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._closing = True
        for live in self._live.values():
            if live.timer is not None:
                live.timer.cancel()
        for retry in self._unload_retries.values():
            retry.cancel()
        assert self._tasks is not None
        await self._tasks.__aexit__(None, None, None)

    def attach(self, rooms: RoomLookup) -> None:
        """Where to find a room's document when its timer fires (the room registry)."""
        self._rooms = rooms

    def pending(self, key: str) -> bool:
        """Whether the room holds changes no version has yet."""
        live = self._live.get(key)
        return live is not None and live.first_change_at is not None

    def position(self, key: str) -> str | None:
        """The update-log position the room's document includes."""
        live = self._live.get(key)
        return None if live is None else live.log_position

    # --- hooks ---------------------------------------------------------------------------------

    def loaded(
        self,
        key: str,
        *,
        version: int,
        state: bytes | None,
        log_position: str | None = None,
        replayed: bool = False,
    ) -> None:
        """A room opened from ``version`` of its diagram, plus the log up to ``log_position``.

        ``replayed``: the log held updates no version has (a crash, a failed snapshot);
        they get their version after ``idle_s``, like fresh edits.
        """
        retry = self._unload_retries.pop(key, None)
        if retry is not None:
            retry.cancel()  # the new room holds everything the unloaded one did
        live = _Live(base_version=version, stored_state=state, log_position=log_position)
        self._live[key] = live
        if replayed:
            live.recovered = True
            self._schedule(key, live)

    def rebased(
        self, key: str, *, version: int, state: bytes, log_position: str | None = None
    ) -> None:
        """A REST save was folded into the room as ``version``: later snapshots build on it."""
        live = self._live.get(key)
        if live is not None:
            live.base_version, live.stored_state = version, state
            live.log_position = later(live.log_position, log_position)

    async def updated(self, key: str, user_id: str | None, position: str | None = None) -> None:
        """The room applied an update made here (by ``user_id``, or by the server), logged
        at ``position`` (None: not logged)."""
        live = self._live.get(key)
        if live is None:
            return
        if user_id is not None:
            live.editors.add(user_id)
        if position is not None:
            live.held.add(position)
        live.local_changes = True
        self._schedule(key, live)

    async def remote_update(self, key: str, position: str | None = None) -> None:
        """The room applied an update from another worker, logged at ``position``.

        That worker snapshots it; this one only stands by, in case it dies first: a
        snapshot ``max_interval_s`` later, which finds the version written and writes
        nothing, unless nobody did.
        """
        live = self._live.get(key)
        if live is None:
            return
        if position is not None:
            live.held.add(position)
            live.remote_upto = later(live.remote_upto, position)
        if live.first_change_at is not None:
            return  # already pending: the scheduled snapshot covers it
        live.first_change_at = self._clock()
        self._arm(key, live, self._max_interval_s)

    async def catch_up(self, key: str) -> None:
        """Apply what the room's log holds after the room's position (lost bus messages)."""
        live = self._live.get(key)
        room = self._rooms(key)
        if live is not None and room is not None:
            await self._catch_up(key, live, room.doc)

    async def _catch_up(self, key: str, live: _Live, doc: Doc[Any]) -> None:
        # Every entry up to the last one read is in the document afterwards: entries are
        # applied before they are logged, and the log hands out positions in order. So
        # this position is honest whichever worker appended what.
        entries = await self._log.read_after(key, live.log_position)
        if not entries:
            return
        # What the room applied already (its own updates, those the bus brought) needs no
        # second application: only what the bus lost does.
        missing = [entry for entry in entries if entry.position not in live.held]
        replay(doc, missing, live.log_position, key=key)
        live.log_position = entries[-1].position
        upto = position_key(live.log_position)
        live.held = {p for p in live.held if position_key(p) > upto}

    def _schedule(self, key: str, live: _Live) -> None:
        now = self._clock()
        if live.first_change_at is None:
            live.first_change_at = now
        # Debounce: wait for a pause, but never past max_interval_s after the first change
        # (the first time, less this room's own phase, so rooms opened together spread).
        deadline = live.first_change_at + self._max_interval_s * (1 - live.phase)
        delay = max(0.0, min(self._idle_s, deadline - now))
        if live.retry_at is not None:
            # The store failed: typing must not turn the backoff into a retry per keystroke.
            delay = max(delay, live.retry_at - now)
        self._arm(key, live, delay)

    def _arm(self, key: str, live: _Live, delay: float) -> None:
        if self._tasks is None or self._closing:
            if live.timer is not None:
                live.timer.cancel()
            return
        live.due = self._clock() + delay
        if live.timer is not None and not live.timer.done():
            if live.wakes_at <= live.due:
                return  # it wakes first, sees the later time and sleeps on
            live.timer.cancel()
        live.wakes_at = live.due
        live.timer = self._tasks.create_task(self._after(key, live))

    async def unloaded(self, key: str, doc: Doc[Any]) -> None:
        live = self._live.get(key)
        if live is None:
            return
        if live.timer is not None:
            live.timer.cancel()
        try:
            await self._snapshot(key, live, LiveDoc(doc, _direct_change(doc)))
        except Exception:
            self.metrics.failed += 1
            if self._closing or self._tasks is None:
                raise
            log.warning("snapshot of unloaded room %s failed; retrying", key, exc_info=True)
            self._unload_retries[key] = self._tasks.create_task(
                self._retry_unloaded(key, live, doc)
            )
        finally:
            if self._live.get(key) is live:
                del self._live[key]

    async def _retry_unloaded(self, key: str, live: _Live, doc: Doc[Any]) -> None:
        # The room is gone but its last edits are only in its log: keep trying to write
        # them while the store is down. A room opened again meanwhile cancels this.
        try:
            for attempt in range(_UNLOAD_RETRIES):
                await asyncio.sleep(_backoff(attempt, cap=self._max_interval_s))
                try:
                    await self._snapshot(key, live, LiveDoc(doc, _direct_change(doc)))
                    return
                except Exception:
                    self.metrics.failed += 1
                    log.warning("snapshot of unloaded room %s failed again", key, exc_info=True)
            self._give_up(key, "the store stayed unavailable; the update log keeps the edits")
        finally:
            if self._unload_retries.get(key) is asyncio.current_task():
                del self._unload_retries[key]

    async def recover(self, doc: Doc[Any], opened: Opened) -> bool:
        """Write a version of a document rebuilt from the log, with no room open for it.
        Returns whether it was written (or already stored); failures are logged."""
        live = _Live(
            base_version=opened.version,
            stored_state=opened.state,
            log_position=opened.log_position,
            recovered=True,
            first_change_at=self._clock(),
        )
        try:
            await self._snapshot(opened.key, live, LiveDoc(doc, _direct_change(doc)))
        except Exception:
            self.metrics.failed += 1
            log.warning("could not write the recovered room %s", opened.key, exc_info=True)
            return False
        return True

    def run_in_background(self, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` in the snapshotter's task group (e.g. recovery at start)."""
        assert self._tasks is not None
        self._tasks.create_task(_logged(work))

    # --- snapshots -----------------------------------------------------------------------------

    async def _after(self, key: str, live: _Live) -> None:
        while (delay := live.due - self._clock()) > 0:
            live.wakes_at = live.due
            await asyncio.sleep(delay)
        room = self._rooms(key)
        if self._live.get(key) is not live or room is None:
            return
        live.timer = None
        try:
            await self._snapshot(key, live, room)
            live.failures, live.retry_at = 0, None
        except SnapshotBusy:
            # Another worker writes this room now; it catches up from the log first, so
            # its version will hold our changes. Look again after a pause.
            self.metrics.busy += 1
            self._arm(key, live, self._idle_s)
        except Exception:
            self.metrics.failed += 1
            live.failures += 1
            delay = _backoff(live.failures, cap=self._max_interval_s)
            live.retry_at = self._clock() + delay
            log.warning(
                "snapshot of %s failed (%d in a row); retrying in %.1f s, the room keeps its "
                "edits and the update log holds them",
                key,
                live.failures,
                delay,
                exc_info=True,
            )
            self._arm(key, live, delay)

    async def _snapshot(self, key: str, live: _Live, room: LiveDoc) -> None:
        if live.first_change_at is None:
            return  # no update since the last version: opening a diagram never makes one
        async with live.lock:
            if live.first_change_at is None:
                return
            if not await self._lock.acquire(key):
                raise SnapshotBusy(key)
            editors, started, recovered = live.editors, live.first_change_at, live.recovered
            local = live.local_changes
            live.editors, live.first_change_at, live.recovered = set(), None, False
            live.local_changes = False
            try:
                async with self._slots:
                    await self._write(
                        key, live, room, editors, recovered=recovered, local=local or recovered
                    )
            except BaseException:
                # Not written: the changes are still pending, by the same editors.
                live.editors |= editors
                live.recovered |= recovered
                live.local_changes |= local
                if live.first_change_at is None:
                    live.first_change_at = started
                raise
            finally:
                await self._lock.release(key)

    async def _write(
        self,
        key: str,
        live: _Live,
        room: LiveDoc,
        editors: set[str],
        *,
        recovered: bool,
        local: bool = True,
    ) -> None:
        org_id, diagram_id, epoch = parse_room_key(key)
        started = time.perf_counter()
        if not local and await self._written_elsewhere(org_id, diagram_id, live, room):
            return
        for _ in range(self._attempts):
            # Catch up, then position, then state: every entry up to the position is in it.
            await self._catch_up(key, live, room.doc)
            position = live.log_position
            state = room.doc.get_update()
            # The state is a copy: reading and rendering it happen away from the event loop.
            rendered = await self._cpu.run(render_state, state)
            current = await self._store.get(org_id, diagram_id)
            if current.crdt_epoch != epoch:
                self._give_up(key, "the document was reset by another write")
                return
            if current.summary.version != live.base_version:
                self.metrics.conflicts += 1
                await self._fold_in(current, live, room)
                continue  # render again, with the other write folded in
            if await self._unchanged(current, live, rendered):
                self.metrics.unchanged += 1
                return
            author = sorted(editors)[0] if editors else "live"
            metadata: dict[str, object] = {"source": "live", "editors": sorted(editors)}
            if recovered:
                metadata["recovered"] = True  # updates replayed from the log after a restart
            try:
                saved = await self._store.save(
                    org_id,
                    diagram_id,
                    expected_version=live.base_version,
                    author=author,
                    content=NewContent(
                        xml=rendered.xml,
                        element_count=rendered.element_count,
                        crdt_state=state,
                        metadata=metadata,
                        log_position=position,
                    ),
                    message=LIVE_EDIT_MESSAGE,
                )
            except VersionConflict:
                continue  # someone wrote between our read and our save: look again
            live.base_version, live.stored_state = saved.summary.version, state
            live.stored_digest = (state, rendered.digest)
            live.phase = 0.0
            self.metrics.written += 1
            self.metrics.duration_seconds.observe(time.perf_counter() - started)
            if position is not None:
                await self._trim(key, position)
            return
        self._give_up(key, f"the version kept moving ({self._attempts} tries)")

    async def _written_elsewhere(
        self, org_id: str, diagram_id: str, live: _Live, room: LiveDoc
    ) -> bool:
        """A standby snapshot (only other workers' updates pending): did they write it?

        When the stored version includes every update the bus brought, its worker wrote
        it: merge it (nothing new, normally) and rebase, with no log read and no render.
        """
        if live.remote_upto is None:
            return False
        current = await self._store.get(org_id, diagram_id)
        if current.log_position is None or current.crdt_state is None:
            return False
        if position_key(current.log_position) < position_key(live.remote_upto):
            return False
        if current.summary.version != live.base_version:
            await self._fold_in(current, live, room)
        # The document holds that version now, so every entry up to its position too.
        live.log_position = later(live.log_position, current.log_position)
        upto = position_key(current.log_position)
        live.held = {p for p in live.held if position_key(p) > upto}
        self.metrics.unchanged += 1
        return True

    async def _unchanged(
        self, current: DiagramRecord, live: _Live, rendered: RenderedState
    ) -> bool:
        if await read_xml(self._blobs, current.xml) == rendered.xml:
            return True
        # A REST save stores its XML as sent, so bytes differ from our rendering even when
        # the room holds exactly that version (a save folded into it): compare the content.
        state = live.stored_state
        if state is None:
            return False
        if live.stored_digest is None or live.stored_digest[0] is not state:
            live.stored_digest = (state, await self._cpu.run(state_digest, state))
        return live.stored_digest[1] == rendered.digest

    async def _fold_in(self, current: DiagramRecord, live: _Live, room: LiveDoc) -> None:
        """Bring a version written by someone else into the live document, and rebase on it."""
        if current.crdt_state is not None and current.crdt_state == live.stored_state:
            live.base_version = current.summary.version  # e.g. a title-only save
            return
        if current.crdt_state is not None:
            # Same epoch, so the same document lineage (another worker's snapshot, a REST
            # save folded into the stored state): a CRDT merge brings in exactly what we
            # lack, and nothing at all when we hold it already.
            theirs_state = current.crdt_state
            await room.change(lambda doc: doc.apply_update(theirs_state))
        else:
            xml = await read_xml(self._blobs, current.xml)
            theirs = await self._cpu.run(parse_xml, xml, self._xml_limits)
            base = (
                await self._cpu.run(read_state, live.stored_state)
                if live.stored_state is not None
                else None
            )
            await room.change(lambda doc: _fold(doc, theirs, base))
        self.metrics.folded += 1
        live.base_version, live.stored_state = current.summary.version, current.crdt_state
        live.log_position = later(live.log_position, current.log_position)

    async def _trim(self, key: str, position: str) -> None:
        try:
            await self._log.trim(key, position)
        except Exception:
            # Harmless: the entries are replayed (idempotently) and trimmed next time.
            self.metrics.trim_failures += 1
            log.warning("could not trim the update log of %s", key, exc_info=True)

    def _give_up(self, key: str, why: str) -> None:
        self.metrics.gave_up += 1
        log.warning("snapshot of %s not written: %s", key, why)


def _fold(doc: Doc[Any], theirs: BpmnModel, base: BpmnModel | None) -> None:
    fold(doc, theirs, base=base)


async def _logged(work: Coroutine[Any, Any, object]) -> None:
    try:
        await work
    except Exception:
        log.exception("background work of the snapshotter failed")


def _direct_change(doc: Doc[Any]) -> Change:
    # An unloaded room has no clients and no log hook: change its document directly.
    async def change(edit: Edit) -> object:
        with doc.transaction():
            return edit(doc)

    return change


def _backoff(attempt: int, *, cap: float) -> float:
    """Exponential backoff with jitter (half to all of the step), at most ``cap`` seconds."""
    ceiling: float = min(cap, _RETRY_BASE_S * 2 ** min(attempt, 16))
    return random.uniform(ceiling / 2, ceiling)
