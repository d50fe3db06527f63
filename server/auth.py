"""User access tokens: HS256 JWTs with ``sub``, ``org``, ``exp``, optional ``name`` and ``role``.

The identity provider is outside this service; it (or ``bpmn-collab token`` in
development) signs tokens with the shared secret. Users and organizations are
recorded on first use of a valid token.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from core.errors import InvalidInput, Unauthenticated
from persistence.models import Principal, Role

ALGORITHM = "HS256"
ROLES: tuple[Role, ...] = ("editor", "viewer")
# Ids from tokens end up in keys, logs and URLs: keep them to a safe, bounded alphabet.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def check_principal_id(value: str, what: str) -> str:
    if not _ID_PATTERN.match(value):
        raise InvalidInput(
            f"{what} must be 1-128 characters of letters, digits and . _ : @ -", field=what
        )
    return value


def issue_user_token(
    secret: str,
    *,
    user_id: str,
    org_id: str,
    role: Role = "editor",
    name: str | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    check_principal_id(user_id, "user")
    check_principal_id(org_id, "org")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "org": org_id,
        "role": role,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_user_token(secret: str, token: str, *, leeway_s: int = 30) -> Principal:
    """The principal a token names; ``Unauthenticated`` saying why when it is not valid.

    Tokens with an audience (room tokens) are refused here: PyJWT rejects an
    ``aud`` claim when no audience is expected.
    """
    principal, _ = _verified(secret, token, leeway_s)
    return principal


class UserTokenVerifier:
    """:func:`verify_user_token`, remembering the last ``capacity`` valid tokens.

    A user sends the same token with every request of its life: checking its signature
    and claims again each time costs about 45 us (PyJWT), a remembered token 0.4 us.
    Signature and claims of a token cannot change, and of its time
    claims only ``exp`` can turn it invalid later (``nbf``/``iat`` only get more valid):
    a remembered token needs its expiry checked and nothing else.
    """

    def __init__(
        self,
        secret: str,
        *,
        leeway_s: int = 30,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._leeway_s = leeway_s
        self._capacity = capacity
        self._clock = clock
        # token -> (principal, the time from which PyJWT would call it expired)
        self._valid: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._valid)

    def __call__(self, token: str) -> Principal:
        remembered = self._valid.get(token)
        if remembered is not None:
            principal, expired_from = remembered
            if self._clock() < expired_from:
                self._valid.move_to_end(token)
                return principal
            del self._valid[token]
        principal, expires = _verified(self._secret, token, self._leeway_s)
        self._valid[token] = (principal, expires + self._leeway_s)
        if len(self._valid) > self._capacity:
            self._valid.popitem(last=False)
        return principal


def _verified(secret: str, token: str, leeway_s: int) -> tuple[Principal, float]:
    """The principal and the ``exp`` of a valid token."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=leeway_s,
            options={"require": ["sub", "org", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the access token has expired; get a new one") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"the access token is not valid: {exc}") from None
    user_id, org_id = claims.get("sub"), claims.get("org")
    role = claims.get("role", "editor")
    name = claims.get("name")
    if not isinstance(user_id, str) or not isinstance(org_id, str):
        raise Unauthenticated("the access token's sub and org claims must be strings")
    if not _ID_PATTERN.match(user_id) or not _ID_PATTERN.match(org_id):
        raise Unauthenticated("the access token's sub or org claim has characters not allowed")
    if role not in ROLES:
        raise Unauthenticated(f"the access token's role must be one of {', '.join(ROLES)}")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise Unauthenticated("the access token's name claim must be a string of 200 or fewer")
    # PyJWT has checked that exp is an integer (it refuses the token otherwise).
    return Principal(user_id=user_id, org_id=org_id, role=role, name=name), float(claims["exp"])


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("send an access token: Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be: Bearer <token>")
    return token.strip()


def load_or_create_secret(configured: str | None, data_dir: Path) -> str:
    """The configured secret, else one kept in ``<data_dir>/jwt-secret`` (made on first use)."""
    if configured is not None:
        return configured
    path = data_dir / "jwt-secret"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Write a private temp file, then link it into place: link fails if the name exists,
    # so when two processes race one wins and the other reads the winner's full secret.
    fd, tmp_name = tempfile.mkstemp(dir=data_dir, prefix=".jwt-secret-")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secret)
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return path.read_text(encoding="ascii").strip()
    finally:
        os.unlink(tmp_name)
    return secret
