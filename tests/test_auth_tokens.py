"""User tokens: verified once, then remembered until they expire, never past that."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from core.errors import Unauthenticated
from server.auth import UserTokenVerifier, issue_user_token

SECRET = "token-tests-secret-" + "s" * 32


def test_a_remembered_token_stops_working_when_it_expires() -> None:
    verify = UserTokenVerifier(SECRET, leeway_s=0)
    # exp lands 1 s from now (exp is whole seconds: up to 2 s).
    token = issue_user_token(
        SECRET, user_id="ada", org_id="acme", ttl_s=3601, now=time.time() - 3600
    )
    assert verify(token).user_id == "ada"
    assert verify(token).org_id == "acme"
    time.sleep(2.1)
    with pytest.raises(Unauthenticated, match="expired"):
        verify(token)
    with pytest.raises(Unauthenticated, match="expired"):
        verify(token)


def test_the_leeway_extends_a_remembered_token_as_it_does_a_fresh_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[str] = []
    decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    now = time.time()
    token = issue_user_token(SECRET, user_id="ada", org_id="acme", ttl_s=60, now=now)
    exp = int(now) + 60
    clock = [now]
    verify = UserTokenVerifier(SECRET, leeway_s=30, clock=lambda: clock[0])
    assert verify(token).user_id == "ada"
    assert len(decoded) == 1
    clock[0] = exp + 29  # past exp, within the leeway: still served from memory
    assert verify(token).user_id == "ada"
    assert len(decoded) == 1
    clock[0] = exp + 30  # past both: checked again (PyJWT, on real time, accepts it)
    assert verify(token).user_id == "ada"
    assert len(decoded) == 2


def test_invalid_tokens_are_refused_every_time() -> None:
    verify = UserTokenVerifier(SECRET)
    forged = issue_user_token("another-secret-" + "x" * 40, user_id="ada", org_id="acme")
    good = issue_user_token(SECRET, user_id="ada", org_id="acme")
    assert verify(good).user_id == "ada"
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="not valid"):
            verify(forged)
    # A changed character is another token: checked, not found in memory.
    with pytest.raises(Unauthenticated):
        verify(good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1])
    assert len(verify) == 1


def test_memory_holds_the_most_recently_used_tokens_only() -> None:
    verify = UserTokenVerifier(SECRET, capacity=2)
    tokens = [issue_user_token(SECRET, user_id=f"u{i}", org_id="acme") for i in range(3)]
    verify(tokens[0])
    verify(tokens[1])
    verify(tokens[0])  # now the most recent
    verify(tokens[2])  # evicts tokens[1]
    assert len(verify) == 2
    assert [verify(t).user_id for t in tokens] == ["u0", "u1", "u2"]
    assert len(verify) == 2
