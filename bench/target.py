"""The server under test: loopback only, user tokens, and the REST calls a benchmark needs.

Every connection goes through the real token flow: a user token (minted with the server's
secret, or given), ``POST /api/diagrams/{id}/collaborate`` for a room token and the
WebSocket URL, then ``/collab/{id}?token=``. Both the target and the WebSocket URL the
server hands back are checked to be loopback: a load run must never leave the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

import httpx

from core.errors import CollabError, InvalidInput
from server.auth import issue_user_token

# Retry-After of a write refused by the per-user limiter; bounded so a misconfigured
# server cannot park the benchmark.
_MAX_RETRY_WAIT_S: Final = 10.0


class TargetRefused(InvalidInput):
    code = "bench_target_refused"
    title = "Benchmark target refused"


class SetupFailed(CollabError):
    """A step before the measurement failed; ``kind`` is how it is counted among errors."""

    code = "bench_setup_failed"
    title = "Benchmark set-up failed"

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail, kind=kind)
        self.kind = kind


def check_loopback(url: str) -> str:
    """``url`` unchanged if it names a loopback host; ``TargetRefused`` otherwise."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https", "ws", "wss") or not host:
        raise TargetRefused(f"not an http(s) or ws(s) URL: {url!r}")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise TargetRefused(
                f"{host!r} is not a loopback address; load runs only target "
                "127.0.0.1, ::1 or localhost"
            )
    return url


def target_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme in ("https", "wss") else 80)


class UserTokens:
    """User tokens: one per user minted with the secret, or the one given for everybody."""

    def __init__(
        self, *, secret: str | None, token: str | None, org: str, ttl_s: int = 3600
    ) -> None:
        if secret is None and token is None:
            raise TargetRefused(
                "give --secret (or AUTH_JWT_SECRET) to mint user tokens, or --token"
            )
        self._secret = secret
        self._token = token
        self._org = org
        self._ttl_s = ttl_s
        self._minted: dict[str, str] = {}

    @property
    def distinct_users(self) -> bool:
        return self._secret is not None

    def for_user(self, user: str) -> str:
        if self._secret is None:
            assert self._token is not None
            return self._token
        token = self._minted.get(user)
        if token is None:
            token = issue_user_token(
                self._secret, user_id=user, org_id=self._org, ttl_s=self._ttl_s, name=user
            )
            self._minted[user] = token
        return token


class Api:
    """The REST calls of a run, on one pooled HTTP client."""

    def __init__(self, base_url: str, *, timeout_s: float = 60) -> None:
        self.base_url = check_loopback(base_url).rstrip("/")
        # trust_env=False: a proxy from the environment must not see (or reroute) loopback calls.
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            trust_env=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.aclose()

    async def create_diagram(self, token: str, title: str, xml: bytes) -> dict[str, Any]:
        answer = await self._call(
            "POST",
            "/api/diagrams",
            token,
            params={"title": title},
            content=xml,
            headers={"Content-Type": "application/xml"},
        )
        body: dict[str, Any] = answer.json()
        return body

    async def grant(self, token: str, diagram_id: str) -> tuple[str, str]:
        """(WebSocket URL of the room, room token)."""
        answer = await self._call("POST", f"/api/diagrams/{diagram_id}/collaborate", token)
        body = answer.json()
        url = check_loopback(str(body["url"])).rstrip("/")
        return f"{url}/{diagram_id}", str(body["token"])

    async def _call(self, method: str, path: str, token: str, **options: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **options.pop("headers", {})}
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = await self._http.request(method, path, headers=headers, **options)
            except httpx.HTTPError as exc:
                raise SetupFailed(
                    f"http_{type(exc).__name__}", f"{method} {path}: {exc!r}"
                ) from exc
            if answer.status_code == 429 and time.monotonic() < deadline:
                # The per-user write limiter: wait as told, a real client would too.
                wait_s = float(answer.headers.get("Retry-After", "1"))
                await asyncio.sleep(min(max(wait_s, 0.1), _MAX_RETRY_WAIT_S))
                continue
            if answer.status_code >= 400:
                raise SetupFailed(
                    f"http_{answer.status_code}", f"{method} {path}: {answer.text[:300]}"
                )
            return answer
