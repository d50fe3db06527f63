"""The WebSocket edge: ``/collab/{diagram_id}?token=...`` into a live room.

Everything is checked before the client may join: Origin, the room token
(signature, expiry, audience, diagram), that the diagram exists in the token's
org, and the document epoch. A refusal accepts the socket only to close it at
once with a code that says why (browsers cannot read HTTP denials), see
``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any, cast
from urllib.parse import parse_qs

from starlette.types import Message, Scope
from starlette.websockets import WebSocket

from core.errors import CollabError, InvalidInput, PermissionDenied, Unauthenticated
from rooms.client import CloseCode, close_code_for
from rooms.protocol import AUTH_PERMISSION_DENIED, AuthMessage, encode_message
from rooms.registry import Session
from server import log_context
from server.documents import room_key
from server.metrics import EdgeMetrics
from server.room_tokens import RoomGrant, check_epoch, verify_room_token
from server.services import Services

log = logging.getLogger(__name__)


class WebSocketTransport:
    """Starlette's WebSocket as the rooms' ``Transport``."""

    __slots__ = ("_closed", "_websocket")

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._closed = False

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionError("the socket is closed")
        await self._websocket.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # already gone: nothing left to tell
            await self._websocket.close(code=code, reason=reason)


async def collab(websocket: WebSocket) -> None:
    diagram_id = websocket.path_params["diagram_id"]
    connection_id = uuid.uuid4().hex[:12]
    # Every line logged while serving this socket, here or in the rooms, names it.
    with log_context.bound(connection_id=connection_id):
        await _serve(websocket, diagram_id, connection_id)


async def _serve(websocket: WebSocket, diagram_id: str, connection_id: str) -> None:
    services = cast(Services, websocket.app.state.services)
    edge = cast(EdgeMetrics, websocket.app.state.edge_metrics)
    try:
        grant = await _admit(websocket, services, diagram_id)
    except CollabError as exc:
        code = close_code_for(exc)
        edge.refused[int(code)] += 1
        log.info("refused on %s: %s (%d)", diagram_id, exc.detail, code)
        await websocket.accept()
        await websocket.close(code=int(code), reason=exc.detail[:120])
        return

    key = room_key(grant.org_id, diagram_id, grant.epoch)
    with log_context.bound(room=key, user_id=grant.user_id):
        await websocket.accept()
        edge.connections_open += 1
        edge.connections_opened += 1
        try:
            await _join(websocket, services, grant, key, connection_id)
        finally:
            edge.connections_open -= 1


async def _join(
    websocket: WebSocket, services: Services, grant: RoomGrant, key: str, connection_id: str
) -> None:
    _retire_older_room(services, grant)
    transport = WebSocketTransport(websocket)
    log.info("connection open (%s)", grant.role)
    rooms = services.rooms
    client = rooms.client(
        transport, user_id=grant.user_id, role=grant.role, connection_id=connection_id
    )
    try:
        # Entered and left by hand, not through rooms.connect(): its context-manager frames
        # would stay alive, per connection, for the connection's whole life.
        async with client:
            session = await rooms.enter(key, client)
            expiry = _TokenExpiry(session, grant.expires_at, services.ws.token_expiry_grace_s)
            try:
                await _FramePump(websocket, session).run()
            except InvalidInput as exc:
                await transport.close(int(CloseCode.MALFORMED), exc.detail)
            finally:
                expiry.cancel()
                await rooms.leave(session)
    except CollabError as exc:
        log.info("room refused: %s", exc.detail)
    finally:
        await transport.close(int(CloseCode.NORMAL), "bye")
        log.info("connection closed")


class _TokenExpiry:
    """When the room token expires, tell the client, then close it with 4401 after the
    grace period, so it reconnects with a fresh token (y-websocket reconnects by itself).

    Two timer handles rather than a task sleeping for each connection's whole life: a
    worker holds thousands of connections, and a handle is a fraction of a task's memory.
    """

    __slots__ = ("_client", "_grace_s", "_loop", "_timer")

    def __init__(self, session: Session, expires_at: float, grace_s: float) -> None:
        self._client = session.client
        self._grace_s = grace_s
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(max(0.0, expires_at - time.time()), self._warn)

    def cancel(self) -> None:
        self._timer.cancel()

    def _warn(self) -> None:
        reason = f"room token expired; reconnect with a new one within {self._grace_s:.0f} s"
        self._client.offer(encode_message(AuthMessage(AUTH_PERMISSION_DENIED, reason)))
        self._timer = self._loop.call_later(self._grace_s, self._close)

    def _close(self) -> None:
        self._client.close(CloseCode.UNAUTHENTICATED, "room token expired")


def _retire_older_room(services: Services, grant: RoomGrant) -> None:
    """Clients still in the previous epoch's room hold a replaced document: tell them."""
    if grant.epoch == 0:
        return
    older = services.rooms.room(room_key(grant.org_id, grant.diagram_id, grant.epoch - 1))
    if older is not None:
        older.close_clients(int(CloseCode.DOCUMENT_RESET), "the document was reset; reload it")


class _FramePump:
    """Hands each frame the peer sends to the room, until the peer leaves or the room closes
    the session.

    It reads in the connection's own task: no task per frame, nor one per connection. When
    the room closes the session, a read waiting for the next frame is cancelled at once (the
    close callback cancels this task and the cancellation is taken back here); a frame the
    room is handling is never interrupted: the loop ends after it.
    """

    __slots__ = ("_interrupted", "_session", "_task", "_waiting", "_websocket")

    def __init__(self, websocket: WebSocket, session: Session) -> None:
        self._websocket = websocket
        self._session = session
        self._waiting = False
        self._interrupted = False
        self._task: asyncio.Task[Any] | None = None

    async def run(self) -> None:
        self._task = asyncio.current_task()
        client = self._session.client
        client.on_close(self._interrupt)
        try:
            await self._read()
        except asyncio.CancelledError:
            # Ours, and nobody else's (a shutdown cancels too): swallow it, or go on raising.
            if not self._interrupted or (self._task is not None and self._task.uncancel() > 0):
                raise
        finally:
            client.remove_close_callback(self._interrupt)

    def _interrupt(self) -> None:
        if self._waiting and not self._interrupted and self._task is not None:
            self._interrupted = True
            self._task.cancel()

    async def _read(self) -> None:
        while not self._session.closed:
            self._waiting = True
            try:
                message: Message = await self._websocket.receive()
            finally:
                self._waiting = False
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                # y-websocket sends binary frames only; text is a broken or foreign client.
                raise InvalidInput("send binary y-protocols frames, not text")
            await self._session.receive(cast(bytes, data))


async def _admit(websocket: WebSocket, services: Services, diagram_id: str) -> RoomGrant:
    # Read from the scope, not through websocket.headers / .query_params: those are parsed
    # once and kept on the socket object for the connection's whole life.
    allowed = services.ws.allowed_origins
    if allowed:
        origin = _header(websocket.scope, b"origin")
        if origin not in allowed:
            raise PermissionDenied(f"origin {origin!r} is not allowed")
    token = _query_param(websocket.scope, "token")
    if not token:
        raise Unauthenticated("add the room token as ?token=")
    grant = verify_room_token(
        services.jwt_secret, token, diagram_id=diagram_id, leeway_s=services.auth_leeway_s
    )
    record = await services.store.get(grant.org_id, diagram_id)
    check_epoch(grant, record.crdt_epoch)
    return grant


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return cast(bytes, value).decode("latin-1")
    return None


def _query_param(scope: Scope, name: str) -> str | None:
    values = parse_qs(cast(bytes, scope.get("query_string", b"")).decode("latin-1")).get(name)
    return values[0] if values else None
