"""What the server does with each update a live room accepted, before anyone sees it.

The room awaits :meth:`Journal.accepted` before fanning an update out to its own
clients: the update is appended to the room's durable log, published to the other
workers (tagged with its log position), and the snapshotter learns of it to
schedule the next version. When the log cannot be written (its Redis or file
unavailable), the update stays in the room's document and is kept here, merged, to
be appended with the room's next update or at the next resync; the next version
holds it in any case. Editing never stops because the log is down.

:meth:`Journal.share` does the same for updates that come from no client here: a
REST save folded into a room open on another worker, an answer to another worker's
resync request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pycrdt import merge_updates

from core.errors import Unavailable
from persistence.update_log import UpdateLog
from server.snapshots import Snapshotter

log = logging.getLogger(__name__)

#: ``publish(room, update, position)``: to the same room on other workers.
Publish = Callable[[str, bytes, str | None], Awaitable[None]]


@dataclass
class JournalMetrics:
    appended: int = 0
    append_failures: int = 0


class Journal:
    def __init__(
        self, update_log: UpdateLog, snapshots: Snapshotter, *, publish: Publish | None = None
    ) -> None:
        self._log = update_log
        self._snapshots = snapshots
        self._publish = publish
        self._unlogged: dict[str, bytes] = {}
        self.metrics = JournalMetrics()

    async def accepted(self, key: str, update: bytes, user_id: str | None) -> None:
        """The room ``key`` applied ``update`` from ``user_id``: log, publish, schedule."""
        position = await self.share(key, update)
        await self._snapshots.updated(key, user_id, position)

    async def share(self, key: str, update: bytes | None) -> str | None:
        """Log and publish ``update`` (with anything not logged before; ``None``: just that).
        Returns its log position, or None when it could not be logged."""
        earlier = self._unlogged.pop(key, None)
        if earlier is None and update is None:
            return None
        entry = _merged(earlier, update)
        position = None
        try:
            position = await self._log.append(key, entry)
            self.metrics.appended += 1
        except Unavailable as exc:
            self.metrics.append_failures += 1
            self._unlogged[key] = entry
            log.warning("update of room %s not logged yet (%s); kept for the next append", key, exc)
        if self._publish is not None:
            await self._publish(key, entry, position)
        return position

    def forget(self, key: str) -> None:
        """The room unloaded (its last snapshot holds what was not logged)."""
        if self._unlogged.pop(key, None) is not None:
            log.warning("room %s unloaded with updates its log never got", key)


def _merged(earlier: bytes | None, update: bytes | None) -> bytes:
    if earlier is None:
        assert update is not None
        return update
    return earlier if update is None else merge_updates(earlier, update)
