"""Room tokens: short-lived, signed permission to join one diagram's live room.

A room token has audience ``room`` (so it is never taken for a user token, nor
a user token for it) and names the diagram, the user, the org, the role and
the document epoch. The WebSocket edge checks it before accepting the socket.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from core.errors import DocumentReset, PermissionDenied, Unauthenticated
from persistence.models import Principal, Role

AUDIENCE = "room"
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class RoomGrant:
    diagram_id: str
    user_id: str
    org_id: str
    role: Role
    epoch: int
    expires_at: int
    name: str | None = None


def issue_room_token(
    secret: str,
    *,
    diagram_id: str,
    principal: Principal,
    epoch: int,
    ttl_s: int,
    now: float | None = None,
) -> tuple[str, RoomGrant]:
    issued = int(now if now is not None else time.time())
    grant = RoomGrant(
        diagram_id=diagram_id,
        user_id=principal.user_id,
        org_id=principal.org_id,
        role=principal.role,
        epoch=epoch,
        expires_at=issued + ttl_s,
        name=principal.name,
    )
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "sub": grant.user_id,
        "org": grant.org_id,
        "dia": grant.diagram_id,
        "role": grant.role,
        "epo": grant.epoch,
        "iat": issued,
        "exp": grant.expires_at,
    }
    if grant.name:
        claims["name"] = grant.name
    return jwt.encode(claims, secret, algorithm=_ALGORITHM), grant


def verify_room_token(secret: str, token: str, *, diagram_id: str, leeway_s: int = 5) -> RoomGrant:
    """The grant a token carries for ``diagram_id``.

    ``Unauthenticated`` (4401: get a new token) for a bad, forged or expired token;
    ``PermissionDenied`` (4403) for a valid token of another diagram.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            leeway=leeway_s,
            options={"require": ["aud", "sub", "org", "dia", "role", "epo", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the room token has expired; ask for a new one") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"the room token is not valid: {exc}") from None
    role, epoch = claims["role"], claims["epo"]
    if role not in ("editor", "viewer") or not isinstance(epoch, int):
        raise Unauthenticated("the room token's role or epoch is not valid")
    if claims["dia"] != diagram_id:
        raise PermissionDenied("the room token is for another diagram")
    name = claims.get("name")
    return RoomGrant(
        diagram_id=str(claims["dia"]),
        user_id=str(claims["sub"]),
        org_id=str(claims["org"]),
        role=role,
        epoch=epoch,
        expires_at=int(claims["exp"]),
        name=name if isinstance(name, str) else None,
    )


def check_epoch(grant: RoomGrant, current_epoch: int) -> None:
    if grant.epoch != current_epoch:
        raise DocumentReset(
            "the document was reset since this token was issued; reload it",
            tokenEpoch=grant.epoch,
            currentEpoch=current_epoch,
        )
