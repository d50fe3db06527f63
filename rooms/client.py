"""One connected client: who it is, its outbox and writer, its rate limits, how it is closed.

Fan-out follows websockets' broadcast guide: a room never awaits a socket. It *offers* a
message to each client's bounded outbox; one writer task per client drains the outbox into
the transport. A client whose outbox is full has fallen too far behind and is closed with
1013 (and counted) instead of holding memory for it or dropping messages silently: a Yjs
client that misses an update would diverge, one that reconnects resyncs.

Rates: a client that sends faster than its token buckets allow is closed with 1013 ("slow
down"), not 4400. Going fast is not malformed input, and bursts do happen legitimately (a
big paste, a reconnect flushing offline work), so the code says "retry later":
y-websocket reconnects with backoff and resyncs through sync step 1/2, losing nothing.

Closing is idempotent and never awaits: it records the code, and the client's own task
cancels a send that may be stuck on a slow socket and then closes the transport, bounded by
``Limits.close_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from enum import IntEnum
from types import TracebackType
from typing import Final, Literal, Self

from core.errors import (
    CollabError,
    DocumentReset,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from rooms.limits import Limits, Metrics, TokenBucket
from rooms.transport import Transport

log = logging.getLogger(__name__)

Role = Literal["editor", "viewer"]

# A WebSocket close frame carries at most 123 bytes of reason.
_MAX_REASON_BYTES: Final = 123


class CloseCode(IntEnum):
    """WebSocket close codes this service uses; ``docs/protocol.md`` lists them for clients."""

    NORMAL = 1000
    LOST = 1006  # never sent: the connection failed while sending; only counted
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    MALFORMED = 4400
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    DOCUMENT_RESET = 4409


def close_code_for(exc: BaseException) -> CloseCode:
    """The close code that tells a client what an error means for it (retry or not)."""
    if not isinstance(exc, CollabError):
        return CloseCode.INTERNAL_ERROR
    table: tuple[tuple[type[CollabError], CloseCode], ...] = (
        (DocumentReset, CloseCode.DOCUMENT_RESET),
        (TooLarge, CloseCode.TOO_BIG),
        (InvalidInput, CloseCode.MALFORMED),
        (Unauthenticated, CloseCode.UNAUTHENTICATED),
        (PermissionDenied, CloseCode.FORBIDDEN),
        (NotFound, CloseCode.NOT_FOUND),
        (Unavailable, CloseCode.TRY_AGAIN_LATER),
    )
    for kind, code in table:
        if isinstance(exc, kind):
            return code
    return CloseCode.INTERNAL_ERROR


def _short_reason(reason: str) -> str:
    data = reason.encode("utf-8")
    if len(data) <= _MAX_REASON_BYTES:
        return reason
    return data[: _MAX_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."


class Client:
    """A connection in a room. Use it as an async context manager: that runs its writer."""

    __slots__ = (
        "_byte_rate",
        "_close_callbacks",
        "_closed",
        "_closed_waiter",
        "_message_rate",
        "_outbox",
        "_send_cancelled",
        "_sending",
        "_wakeup",
        "_writer",
        "close_code",
        "close_reason",
        "connection_id",
        "limits",
        "metrics",
        "role",
        "transport",
        "user_id",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        user_id: str,
        role: Role,
        connection_id: str | None = None,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.user_id = user_id
        self.role: Role = role
        self.connection_id = connection_id or uuid.uuid4().hex
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self.close_code: int | None = None
        self.close_reason = ""
        # A list and one wake-up future rather than an asyncio.Queue: offer() runs for every
        # client on every update, and the queue's getter bookkeeping was a visible share of
        # it. Not a deque either: an empty deque holds a 64-slot block, an empty list nothing,
        # and an outbox is almost always empty or one message long.
        self._outbox: list[bytes] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._message_rate = TokenBucket(
            self.limits.messages_per_s, self.limits.message_burst, clock
        )
        self._byte_rate = TokenBucket(self.limits.bytes_per_s, self.limits.byte_burst, clock)
        # One task per client (its writer, which also closes it) and plain futures, not
        # Events or task groups: a worker holds thousands of clients, each one's objects
        # are its memory (bench/README.md, memory per idle connection).
        self._closed = False
        self._closed_waiter: asyncio.Future[None] | None = None
        self._close_callbacks: list[Callable[[], object]] = []
        self._writer: asyncio.Task[None] | None = None
        self._sending = False
        self._send_cancelled = False

    def __repr__(self) -> str:
        return f"<Client {self.connection_id} user={self.user_id} role={self.role}>"

    @property
    def can_edit(self) -> bool:
        return self.role == "editor"

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self) -> None:
        if self._closed:
            return
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed_waiter)

    def on_close(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once, when the client closes (at once if it has)."""
        if self._closed:
            callback()
        else:
            self._close_callbacks.append(callback)

    def remove_close_callback(self, callback: Callable[[], object]) -> None:
        if callback in self._close_callbacks:
            self._close_callbacks.remove(callback)

    # --- sending ----------------------------------------------------------------------------

    def offer(self, data: bytes) -> bool:
        """Queue ``data`` for the writer without waiting; say whether it was queued.

        A full outbox closes the client with 1013: it fell too far behind.
        """
        if self.closed:
            return False
        if len(self._outbox) >= self.limits.outbox_size:
            self.close(CloseCode.TRY_AGAIN_LATER, "overloaded: you fell too far behind")
            return False
        self._outbox.append(data)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return True

    # --- receiving --------------------------------------------------------------------------

    def within_rate(self, size: int) -> bool:
        """Spend one message and ``size`` bytes of this client's rates; False when over."""
        # No refund on refusal: a client over its rate is closed anyway.
        return self._message_rate.take(1) and self._byte_rate.take(size)

    # --- closing ----------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Close this client with ``code``; later calls do nothing. Never waits."""
        if self.closed:
            return
        self.close_code = code
        self.close_reason = _short_reason(reason)
        self.metrics.clients_closed[code] += 1
        self._closed = True
        for waiter in (self._closed_waiter, self._wakeup):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if self._sending and self._writer is not None:
            # A send blocked on a slow socket would delay the close forever: cancel it.
            self._send_cancelled = True
            self._writer.cancel()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            callback()

    async def __aenter__(self) -> Self:
        self._writer = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(CloseCode.NORMAL, "bye")
        assert self._writer is not None
        # The body's own exception propagates as it is; the writer ends once closed.
        await asyncio.wait([self._writer])
        if not self._writer.cancelled():
            self._writer.result()

    async def _run(self) -> None:
        await self._write()
        if self.close_code == CloseCode.LOST:
            return
        try:
            async with asyncio.timeout(self.limits.close_timeout_s):
                await self.transport.close(self.close_code or CloseCode.NORMAL, self.close_reason)
        except Exception as exc:  # the peer may be gone already: nothing left to tell it
            log.debug("closing %s failed: %r", self, exc)

    async def _write(self) -> None:
        """Send what is offered, in order, until the client closes."""
        loop = asyncio.get_running_loop()
        outbox = self._outbox
        while not self._closed:
            if not outbox:
                self._wakeup = loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
                continue
            data = outbox.pop(0)
            self._sending = True
            try:
                await self.transport.send(data)
            except asyncio.CancelledError:
                if not self._send_cancelled:
                    raise
                # Our own cancel, from close(): this task goes on to close the transport.
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                return
            except Exception as exc:
                self._sending = False  # so that close() does not cancel this very task
                log.debug("sending to %s failed: %r", self, exc)
                self.close(CloseCode.LOST, "connection lost")
                return
            finally:
                self._sending = False
            self.metrics.messages_out += 1
            self.metrics.bytes_out += len(data)
