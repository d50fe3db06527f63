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
from typing import cast

from starlette.types import Message
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
    try:
        async with services.rooms.connect(
            key,
            transport,
            user_id=grant.user_id,
            role=grant.role,
            connection_id=connection_id,
        ) as session:
            expiry = asyncio.ensure_future(
                _expire(session, grant.expires_at, services.ws.token_expiry_grace_s)
            )
            try:
                await _FramePump(websocket, session).run()
            except InvalidInput as exc:
                await transport.close(int(CloseCode.MALFORMED), exc.detail)
            finally:
                expiry.cancel()
    except CollabError as exc:
        log.info("room refused: %s", exc.detail)
    finally:
        await transport.close(int(CloseCode.NORMAL), "bye")
        log.info("connection closed")


async def _expire(session: Session, expires_at: float, grace_s: float) -> None:
    """When the room token expires, tell the client, then close it with 4401 after the
    grace period, so it reconnects with a fresh token (y-websocket reconnects by itself)."""
    await asyncio.sleep(max(0.0, expires_at - time.time()))
    session.client.offer(
        encode_message(
            AuthMessage(
                AUTH_PERMISSION_DENIED,
                f"room token expired; reconnect with a new one within {grace_s:.0f} s",
            )
        )
    )
    await asyncio.sleep(grace_s)
    session.client.close(CloseCode.UNAUTHENTICATED, "room token expired")


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

    One task reads for the whole connection (a task per frame would cost more than many a
    frame's handling). When the room closes the session, a read waiting for the next frame is
    cancelled at once; a frame the room is handling is never interrupted: the loop ends after
    it.
    """

    def __init__(self, websocket: WebSocket, session: Session) -> None:
        self._websocket = websocket
        self._session = session
        self._waiting = False

    async def run(self) -> None:
        reader = asyncio.ensure_future(self._read())
        closed = asyncio.ensure_future(self._session.wait_closed())
        try:
            await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not reader.done():
                if self._waiting:
                    reader.cancel()
                await asyncio.wait({reader})
        if not reader.cancelled():
            reader.result()  # what the read raised: a text frame, say

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
    origin = websocket.headers.get("origin")
    allowed = services.ws.allowed_origins
    if allowed and origin not in allowed:
        raise PermissionDenied(f"origin {origin!r} is not allowed")
    token = websocket.query_params.get("token")
    if not token:
        raise Unauthenticated("add the room token as ?token=")
    grant = verify_room_token(
        services.jwt_secret, token, diagram_id=diagram_id, leeway_s=services.auth_leeway_s
    )
    record = await services.store.get(grant.org_id, diagram_id)
    check_epoch(grant, record.crdt_epoch)
    return grant
