"""What the server does with each update a live room accepted, before anyone sees it.

The room awaits :meth:`Journal.accepted` before fanning an update out: the update is
appended to the room's durable log, then the snapshotter learns of it (with the
log position) to schedule the next version. When the log cannot be written (its
Redis or file unavailable), the update stays in the room's document and is kept
here, merged, to be appended with the room's next update; the next version holds it
in any case. Editing never stops because the log is down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pycrdt import merge_updates

from core.errors import Unavailable
from persistence.update_log import UpdateLog
from server.snapshots import Snapshotter

log = logging.getLogger(__name__)


@dataclass
class JournalMetrics:
    appended: int = 0
    append_failures: int = 0


class Journal:
    def __init__(self, update_log: UpdateLog, snapshots: Snapshotter) -> None:
        self._log = update_log
        self._snapshots = snapshots
        self._unlogged: dict[str, bytes] = {}
        self.metrics = JournalMetrics()

    async def accepted(self, key: str, update: bytes, user_id: str | None) -> None:
        """The room ``key`` applied ``update`` from ``user_id``: log it, then schedule."""
        earlier = self._unlogged.pop(key, None)
        entry = update if earlier is None else merge_updates(earlier, update)
        position = None
        try:
            position = await self._log.append(key, entry)
            self.metrics.appended += 1
        except Unavailable as exc:
            self.metrics.append_failures += 1
            self._unlogged[key] = entry
            log.warning("update of room %s not logged yet (%s); kept for the next append", key, exc)
        await self._snapshots.updated(key, user_id, position)

    def forget(self, key: str) -> None:
        """The room unloaded (its last snapshot holds what was not logged)."""
        if self._unlogged.pop(key, None) is not None:
            log.warning("room %s unloaded with updates its log never got", key)
