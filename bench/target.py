"""The server under test, as the scenarios see it: a :class:`Target` makes rooms holding a
diagram and joins clients to them, whatever the kind of server behind it.

- ours (:class:`OursTarget`): every connection goes through the real token flow: a user token
  (minted with the server's secret, or given), ``POST /api/diagrams/{id}/collaborate`` for a
  room token and the WebSocket URL, then ``/collab/{id}?token=``;
- a peer (:class:`PeerTarget`: pycrdt-websocket, y-websocket, Hocuspocus): no REST and no
  token; a room is a URL path (``ws://host:port/{room}``), or for Hocuspocus a document name
  inside every frame of one URL. The driver seeds each room with the diagram itself
  (:mod:`bench.seed`) before anyone measures anything.

The target, and the WebSocket URL our server hands back, are checked to be loopback: a load
run must never leave the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Final, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

from bench.clients import Link, Ticket, Traffic, join, resync, send
from bench.config import BenchConfig
from bench.seed import Seed, element_count, seed_from_xml
from bench.wire import Y_WIRE, HocuspocusWire
from core.errors import CollabError, InvalidInput
from rooms.protocol import SyncUpdate
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


# --- targets --------------------------------------------------------------------------------


class Target(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def label(self) -> str:
        """This run's tag in room names and titles (runs never share rooms)."""
        ...

    async def create_rooms(self, count: int, xml: bytes) -> list[str]:
        """``count`` rooms, each holding the diagram ``xml`` once its first client joins."""
        ...

    async def ticket(self, room: str, user: str) -> Ticket:
        """What ``user`` needs to join ``room`` (a room token is fetched here, if any)."""
        ...

    async def open_room(self, room: str, user: str, traffic: Traffic) -> tuple[Link, bytes]:
        """``user`` joined to ``room`` and synced: (the link, the state it got)."""
        ...


class OursTarget:
    """Our server: diagrams over REST, one user token per user, room tokens per join."""

    kind = "ours"

    def __init__(
        self,
        api: Api,
        tokens: UserTokens,
        *,
        label: str,
        concurrency: int = 50,
        origin: str | None = None,
    ) -> None:
        self.api = api
        self.tokens = tokens
        self.label = label
        self._concurrency = concurrency
        self._origin = origin

    async def create_rooms(self, count: int, xml: bytes) -> list[str]:
        # Each diagram by its own owner when tokens are minted, so the server's per-user
        # write limit is not what the set-up measures.
        gate = asyncio.Semaphore(self._concurrency)

        async def create(index: int) -> str:
            async with gate:
                token = self.tokens.for_user(f"bench-owner-{index}")
                title = f"bench {self.label} room {index}"
                return str((await self.api.create_diagram(token, title, xml))["id"])

        return await asyncio.gather(*(create(i) for i in range(count)))

    async def ticket(self, room: str, user: str) -> Ticket:
        url, room_token = await self.api.grant(self.tokens.for_user(user), room)
        return Ticket(f"{url}?token={room_token}", Y_WIRE)

    async def open_room(self, room: str, user: str, traffic: Traffic) -> tuple[Link, bytes]:
        return await join(await self.ticket(room, user), traffic, origin=self._origin)


class PeerTarget:
    """A peer server: rooms by name, seeded by their first client (see :mod:`bench.seed`).

    The first :meth:`open_room` of a room pushes the diagram and waits until the server
    shows it holds it; joins of the same room meanwhile wait for that. The connection
    handed to that first caller is a fresh one that synced after the push (peers drop a
    room's document when its last client leaves: it must never be left empty). A room the
    server did not take the diagram into is not tried again: every later join of it fails
    the same way, counted.
    """

    def __init__(self, kind: str, base_url: str, *, label: str, origin: str | None = None) -> None:
        parts = urlsplit(check_loopback(base_url).rstrip("/"))
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        self.kind = kind
        self.label = label
        self.base_url = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
        self._origin = origin
        self._unseeded: dict[str, Seed] = {}
        self._seeding: dict[str, asyncio.Lock] = {}
        self._failed: dict[str, SetupFailed] = {}

    async def create_rooms(self, count: int, xml: bytes) -> list[str]:
        seed = seed_from_xml(xml)
        rooms = [f"bench-{self.label}-room-{index}" for index in range(count)]
        for room in rooms:
            self._unseeded[room] = seed
        return rooms

    async def ticket(self, room: str, user: str) -> Ticket:
        if self.kind == "hocuspocus":
            return Ticket(self.base_url, HocuspocusWire(room))
        return Ticket(f"{self.base_url}/{room}", Y_WIRE)

    async def open_room(self, room: str, user: str, traffic: Traffic) -> tuple[Link, bytes]:
        ticket = await self.ticket(room, user)
        async with self._seeding.setdefault(room, asyncio.Lock()):
            if (failed := self._failed.get(room)) is not None:
                raise SetupFailed(failed.kind, failed.detail)
            seed = self._unseeded.get(room)
            if seed is not None:
                try:
                    joined = await self._seed(ticket, seed, traffic)
                except SetupFailed as exc:
                    self._failed[room] = exc
                    raise
                # (Any other failure, a time-out say, leaves the seeding to the next join.)
                del self._unseeded[room]
                return joined
        return await join(ticket, traffic, origin=self._origin)

    async def _seed(self, ticket: Ticket, seed: Seed, traffic: Traffic) -> tuple[Link, bytes]:
        """Push ``seed`` on one connection; a second, fresh one that holds it, or
        ``SetupFailed``. The pushing connection's own round trip after the push checks the
        server applied it (one connection's messages are handled in order), so the fresh
        join cannot race it."""
        pusher, before = await join(ticket, traffic, origin=self._origin)
        try:
            if (found := element_count(before)) != 0:
                # Pushing into a used room would add a second copy of every element.
                raise SetupFailed(
                    "seed_room_not_empty", f"{ticket.url}: the room already holds {found} elements"
                )
            await send(pusher, traffic, SyncUpdate(seed.state))
            _check_seeded(await resync(pusher, traffic), seed, "right after the push")
            fresh, state = await join(ticket, traffic, origin=self._origin)
            try:
                _check_seeded(state, seed, "on a fresh connection")
            except BaseException:
                await fresh.ws.close()
                raise
            return fresh, state
        finally:
            await pusher.ws.close()


def _check_seeded(state: bytes, seed: Seed, when: str) -> None:
    held = element_count(state)
    if held != seed.elements:
        raise SetupFailed(
            "seed_not_held",
            f"the server holds {held} of the diagram's {seed.elements} elements {when}",
        )


@contextlib.asynccontextmanager
async def open_target(config: BenchConfig) -> AsyncIterator[OursTarget | PeerTarget]:
    """The target of ``config`` for one run (its HTTP client closed at the end)."""
    if config.server != "ours":
        label = secrets.token_hex(4)
        yield PeerTarget(config.server, config.target, label=label, origin=config.origin)
        return
    async with Api(config.target) as api:
        yield ours(config, api)


def ours(config: BenchConfig, api: Api) -> OursTarget:
    """Our server through ``api``, with an org of its own (a new label each call)."""
    label = secrets.token_hex(4)
    tokens = UserTokens(
        secret=config.secret,
        token=config.token,
        org=f"bench-{label}",
        ttl_s=int(config.setup_timeout_s + config.duration_s + 600),
    )
    return OursTarget(
        api, tokens, label=label, concurrency=config.connect_concurrency, origin=config.origin
    )
