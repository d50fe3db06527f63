"""The one capability a room needs from a connection, and an in-memory implementation of it.

The WebSocket edge adapts Starlette's ``WebSocket`` to :class:`Transport`; tests and benchmarks
use :class:`MemoryTransport`, which is a real transport over asyncio primitives rather than a
mock, so the room code under test runs exactly as it does behind a socket.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Transport(Protocol):
    """A message-oriented, ordered connection to one client.

    ``send`` may block while the peer is slow (the client's writer task absorbs that) and
    raises any exception once the connection is gone. ``close`` must be idempotent and must
    not raise when the connection is already closed; it is called at most once per client by
    the client's writer, but the edge may race it.
    """

    async def send(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class TransportClosed(ConnectionError):
    """:class:`MemoryTransport` refuses to send after it was closed."""


class MemoryTransport:
    """A :class:`Transport` whose far end is a queue: what the server sends lands in ``sent``.

    ``pause()`` makes ``send`` block, as a socket does whose peer stopped reading.
    """

    def __init__(self) -> None:
        self.sent: asyncio.Queue[bytes] = asyncio.Queue()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._closed = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise TransportClosed("the transport is closed")
        await self._flowing.wait()
        if self.closed:
            raise TransportClosed("the transport is closed")
        self.sent.put_nowait(data)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.close_code = code
        self.close_reason = reason
        self._closed.set()
        # A send blocked on a paused peer would otherwise never notice the close.
        self._flowing.set()

    async def wait_closed(self) -> tuple[int, str]:
        await self._closed.wait()
        assert self.close_code is not None
        return self.close_code, self.close_reason or ""

    async def receive(self) -> bytes:
        """The next message the server sent (waits for it)."""
        return await self.sent.get()

    def drain(self) -> list[bytes]:
        """Every message sent so far and not yet received, without waiting."""
        messages = []
        while not self.sent.empty():
            messages.append(self.sent.get_nowait())
        return messages
