"""The durable per-room log of accepted updates: the port and what its adapters share.

A live room appends every update it accepts here before fanning it out. A version
written from the room records the position of the last entry its CRDT state holds;
a room opened later starts from that state and replays the entries after it, so a
crash loses no accepted update. After the version commits, the log is trimmed up
to its position.

Positions are text of the form ``"<major>-<minor>"`` (a Redis stream id; the SQLite
adapter uses ``"<row id>-0"``) and are ordered by the pair of integers, never as
text. Every adapter passes the same contract suite (``tests/contract``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from core.errors import CollabError

_POSITION = re.compile(r"^(\d{1,20})-(\d{1,20})$")


@dataclass(frozen=True, slots=True)
class LogEntry:
    position: str
    update: bytes


class UpdateLog(Protocol):
    async def append(self, room: str, update: bytes) -> str:
        """Store ``update`` durably for ``room`` and return its position.

        A position returned later is greater than every position returned before
        the call started. Raises ``Unavailable`` when the log cannot be written.
        """

    async def read_after(self, room: str, position: str | None) -> list[LogEntry]:
        """The room's entries after ``position`` (all of them for ``None``), in order."""

    async def trim(self, room: str, position: str) -> None:
        """Drop the room's entries up to and including ``position``."""

    async def rooms(self) -> list[str]:
        """Rooms that hold entries (crash recovery looks for unsaved work here)."""

    async def ping(self) -> None:
        """Raise ``Unavailable`` when the log cannot be reached."""


def position_key(position: str) -> tuple[int, int]:
    """The order of a position."""
    match = _POSITION.match(position)
    if match is None:
        raise CollabError(f"{position!r} is not an update-log position")
    return int(match[1]), int(match[2])


def later(a: str | None, b: str | None) -> str | None:
    """The later of two positions (``None`` is before every position)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if position_key(a) >= position_key(b) else b


def successor(position: str) -> str:
    """The smallest position after ``position``."""
    major, minor = position_key(position)
    return f"{major}-{minor + 1}"


WriteBatch = Callable[[list[tuple[str, bytes]]], Awaitable[list[str]]]


class GroupCommit:
    """Appends that arrive while a write runs go together into the next one.

    A burst of keystrokes across a worker's rooms then costs one transaction or one
    pipelined round trip, not one each, and one connection at a time. ``submit``
    returns once its own entry is written, with its position.
    """

    def __init__(self, write: WriteBatch) -> None:
        self._write = write
        self._pending: list[tuple[str, bytes, asyncio.Future[str]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, room: str, update: bytes) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((room, update, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="update-log-flush")
        return await future

    async def drain(self) -> None:
        """Wait for the writes under way (before closing the connection they use)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                positions = await self._write([(room, update) for room, update, _ in batch])
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), position in zip(batch, positions, strict=True):
                if not future.done():
                    future.set_result(position)
