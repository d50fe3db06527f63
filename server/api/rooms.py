"""Joining a live room over HTTP: the room token and where to connect."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from server.api.context import caller
from server.http import json_response
from server.room_tokens import issue_room_token
from server.schemas import CollaborateOut


def collab_url(request: Request, public_url: str | None) -> str:
    """``ws(s)://<host>/collab``: the serverUrl y-websocket appends ``/<diagramId>`` to."""
    if public_url:
        base = public_url.rstrip("/")
        base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/collab"
    scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
    return f"{scheme}://{request.url.netloc}/collab"


async def collaborate(request: Request) -> Response:
    services, principal = await caller(request)
    record = await services.store.get(principal.org_id, request.path_params["diagram_id"])
    token, grant = issue_room_token(
        services.jwt_secret,
        diagram_id=record.summary.id,
        principal=principal,
        epoch=record.crdt_epoch,
        ttl_s=services.ws.room_token_ttl_s,
    )
    return json_response(
        CollaborateOut(
            token=token,
            url=collab_url(request, services.ws.public_url),
            role=grant.role,
            expires_at=datetime.fromtimestamp(grant.expires_at, UTC),
        )
    )
