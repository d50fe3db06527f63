"""Awareness (cursors, selections, who is here) for one room, without I/O.

:class:`AwarenessStates` holds every client's latest state and applies updates with the rules
of y-protocols' ``applyAwarenessUpdate``, so the server agrees with every client on which state
wins: a higher clock replaces, an equal clock may only remove. It also remembers which
connection announced which ids, so that a connection's ids can be removed when it leaves (as
y-websocket's server does), and it expires states that were not renewed in time (clients renew
every 15 s; y-protocols times them out after 30 s).

:class:`Coalescer` merges the accepted changes of a short window by client id, so a room of
200 moving cursors sends one awareness message per window instead of one per move.

States are relayed verbatim, but only once they parse as JSON: y-protocols calls
``JSON.parse`` on every state it receives, and one bad state would break every receiver.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import NoReturn

from core.errors import InvalidInput
from rooms.protocol import AwarenessEntry, MalformedMessage

REMOVED = "null"


class AwarenessRefused(InvalidInput):
    """An awareness update that is well-formed but breaks a limit."""

    code = "awareness_refused"
    title = "Awareness update refused"


@dataclass(slots=True)
class _Meta:
    clock: int
    last_updated: float


def _reject_constant(name: str) -> NoReturn:
    # JSON.parse refuses NaN and Infinity; Python's json would accept them.
    raise ValueError(f"{name} is not JSON")


def _checked(entry: AwarenessEntry, max_state_bytes: int) -> AwarenessEntry:
    if entry.removed:
        return entry
    if len(entry.state) > max_state_bytes:  # characters: a cheap first cut before bytes
        raise AwarenessRefused(f"awareness state of client {entry.client_id} is too large")
    if len(entry.state.encode("utf-8")) > max_state_bytes:
        raise AwarenessRefused(f"awareness state of client {entry.client_id} is too large")
    try:
        value = json.loads(entry.state, parse_constant=_reject_constant)
    except ValueError:
        raise MalformedMessage(f"awareness state of client {entry.client_id} is not JSON") from None
    if value is None:  # " null " removes the client in y-protocols too
        return AwarenessEntry(entry.client_id, entry.clock, REMOVED)
    return entry


class AwarenessStates:
    """The room's awareness states; ``owner`` is whatever identifies a connection."""

    def __init__(
        self,
        *,
        timeout_s: float,
        clock: Callable[[], float],
        max_state_bytes: int,
        ids_per_owner: int,
    ) -> None:
        self._timeout_s = timeout_s
        self._clock = clock
        self._max_state_bytes = max_state_bytes
        self._ids_per_owner = ids_per_owner
        self._states: dict[int, str] = {}
        # Kept after a removal, as y-protocols does, so a late stale update cannot revive a
        # client; pruned after the timeout so a long-lived room does not grow forever.
        self._meta: dict[int, _Meta] = {}
        self._owner_of: dict[int, Hashable] = {}
        self._owned: dict[Hashable, set[int]] = {}

    def __len__(self) -> int:
        return len(self._states)

    def states(self) -> list[AwarenessEntry]:
        """Every present state, as a joiner or a query-awareness needs them."""
        return [
            AwarenessEntry(client_id, self._meta[client_id].clock, state)
            for client_id, state in self._states.items()
        ]

    def owned_by(self, owner: Hashable) -> frozenset[int]:
        return frozenset(self._owned.get(owner, ()))

    def apply(self, owner: Hashable, entries: Iterable[AwarenessEntry]) -> list[AwarenessEntry]:
        """Apply one client's update; return the entries that changed something.

        Raises :class:`MalformedMessage` for a state that is not JSON and
        :class:`AwarenessRefused` for one too large or too many ids for one connection;
        nothing is applied then.
        """
        checked = [_checked(entry, self._max_state_bytes) for entry in entries]
        announced = self._owned.get(owner, set()) | {e.client_id for e in checked if not e.removed}
        if len(announced) > self._ids_per_owner:
            raise AwarenessRefused(
                f"a connection may announce at most {self._ids_per_owner} awareness clients"
            )
        now = self._clock()
        accepted = []
        for entry in checked:
            meta = self._meta.get(entry.client_id)
            current = 0 if meta is None else meta.clock
            newer = current < entry.clock
            removes = current == entry.clock and entry.removed and entry.client_id in self._states
            if not (newer or removes):
                continue
            if entry.removed:
                self._states.pop(entry.client_id, None)
                self._disown(entry.client_id)
            else:
                self._states[entry.client_id] = entry.state
                self._own(owner, entry.client_id)
            self._meta[entry.client_id] = _Meta(entry.clock, now)
            accepted.append(entry)
        return accepted

    def remove_owner(self, owner: Hashable) -> list[AwarenessEntry]:
        """Remove the states ``owner`` announced (it left); return the removals to relay."""
        return [self._remove(client_id) for client_id in sorted(self._owned.pop(owner, ()))]

    def expire(self) -> list[AwarenessEntry]:
        """Remove the states not renewed within the timeout; return the removals to relay."""
        now = self._clock()
        removals = []
        for client_id, meta in list(self._meta.items()):
            if now - meta.last_updated < self._timeout_s:
                continue
            if client_id in self._states:
                removals.append(self._remove(client_id))
            else:
                del self._meta[client_id]
        return removals

    def _remove(self, client_id: int) -> AwarenessEntry:
        # y-protocols removes with clock + 1, so every receiver accepts the removal.
        meta = self._meta.get(client_id)
        clock = (0 if meta is None else meta.clock) + 1
        self._meta[client_id] = _Meta(clock, self._clock())
        self._states.pop(client_id, None)
        self._disown(client_id)
        return AwarenessEntry(client_id, clock, REMOVED)

    def _own(self, owner: Hashable, client_id: int) -> None:
        previous = self._owner_of.get(client_id)
        if previous == owner:
            return
        if previous is not None:
            self._disown(client_id)
        self._owner_of[client_id] = owner
        self._owned.setdefault(owner, set()).add(client_id)

    def _disown(self, client_id: int) -> None:
        owner = self._owner_of.pop(client_id, None)
        if owner is None:
            return
        ids = self._owned.get(owner)
        if ids is not None:
            ids.discard(client_id)
            if not ids:
                del self._owned[owner]


class Coalescer:
    """Changes waiting for the end of the window, the latest per client id."""

    def __init__(self) -> None:
        self._pending: dict[int, AwarenessEntry] = {}

    def __bool__(self) -> bool:
        return bool(self._pending)

    def add(self, entries: Iterable[AwarenessEntry]) -> None:
        for entry in entries:
            # Entries arrive already accepted, in order: the later one always wins.
            self._pending[entry.client_id] = entry

    def take(self) -> list[AwarenessEntry]:
        entries = list(self._pending.values())
        self._pending.clear()
        return entries
