"""Mixed REST + WebSocket load for locust, against a server on loopback::

    AUTH_JWT_SECRET=... locust -f bench/locustfile.py --headless -u 200 -r 50 -t 60s \\
        --host http://127.0.0.1:8000

- ``RestUser`` (weight 4): the people of ``bpmn-collab bench rest``, pumping the same
  :class:`~bench.workflow.Workflow` (list, get, summary, XML, save with ``expectedVersion``,
  think times) over ``requests``. Stats are named by operation, and by status where it is
  an expected outcome other than success: ``get 304``, ``save 409`` (a conflict, then a
  re-get and a retry), ``save 429`` (waited out as ``Retry-After`` says).
- ``EditorUser`` (weight 1): joins a room through the real token flow (user token ->
  ``POST /api/diagrams/{id}/collaborate`` -> ``/collab/{id}?token=``), speaks y-websocket's
  sync protocol (``rooms/protocol.py``) over ``websocket-client``, and renames its task at
  ``--ws-rate``. ``WS connect`` times collaborate + handshake + sync; ``WS edit fan-out`` an
  edit's round trip through the server: from its send to another editor's document showing
  it (the stamp in the new name carries the send time; one process, one clock).

Each locust process makes its own org, its diagrams (``--diagrams``) and its rooms
(``--ws-rooms``) at test start, and mints a token per user with the server's secret
(``AUTH_JWT_SECRET`` or ``--secret``). ``--ws-editors N`` runs exactly N editors instead of
one user in five. Locust runs on gevent: everything here is blocking code on patched sockets.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final

import gevent  # type: ignore[import-untyped]
import requests
import websocket
from locust import User, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner
from pycrdt import Map

from bench.diagrams import chain_diagram
from bench.edits import EditingDoc, find_targets
from bench.stamp import Stamp, read_stamp
from bench.target import check_loopback
from bench.workflow import Call, Habits, Reply, Workflow, diagram_title
from bpmn.document import ELEMENTS
from core.errors import CollabError
from rooms.protocol import (
    MalformedMessage,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from server.auth import issue_user_token

log = logging.getLogger(__name__)

_TIMEOUT_S: Final = 30.0
_TOKEN_TTL_S: Final = 24 * 3600
_TASKS: Final = 50
_EMPTY_STATE_VECTOR: Final = b"\x00"
_EMPTY_UPDATE: Final = b"\x00\x00"


@dataclass(slots=True)
class _Test:
    """What this process set up at test start: shared by its users."""

    host: str = ""
    secret: str = ""
    org: str = ""
    room_org: str = ""
    diagrams: list[str] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)
    habits: Habits = field(default_factory=Habits)
    ws_rate_hz: float = 1.0
    ready: bool = False

    def token(self, user: str, org: str) -> str:
        return issue_user_token(
            self.secret, user_id=user, org_id=org, ttl_s=_TOKEN_TTL_S, name=user
        )


_test = _Test()
_numbers = itertools.count()  # users of this process; a stamp names its editor by it


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _options(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("bpmn-collab")
    group.add_argument("--secret", default="", help="the server's AUTH_JWT_SECRET (or set it)")
    group.add_argument("--think", type=float, default=5.0, help="mean think time, s")
    group.add_argument("--diagrams", type=int, default=20, help="diagrams REST users share")
    group.add_argument("--ws-rooms", type=int, default=4, help="rooms the editors share")
    group.add_argument("--ws-rate", type=float, default=1.0, help="edits/s per editor")
    group.add_argument("--ws-editors", type=int, default=0, help="exactly N editors (0: 1 in 5)")


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is not None and options.ws_editors > 0:
        EditorUser.fixed_count = options.ws_editors


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _set_up(environment: Environment, **_: Any) -> None:
    """This process's org, diagrams and rooms; users fail at start when it could not."""
    if isinstance(environment.runner, MasterRunner):
        return  # the master runs no users
    try:
        _prepare(environment)
    except (ValueError, CollabError, requests.RequestException) as exc:
        log.error("bpmn-collab set-up failed: %s", exc)


def _prepare(environment: Environment) -> None:
    options = environment.parsed_options
    if options is None:
        raise ValueError("no command line options")
    if not (options.diagrams >= 1 and options.ws_rooms >= 1 and options.ws_rate > 0):
        raise ValueError("--diagrams and --ws-rooms must be >= 1, --ws-rate > 0")
    _test.host = check_loopback(environment.host or "").rstrip("/")
    _test.secret = options.secret or os.environ.get("AUTH_JWT_SECRET", "")
    if not _test.secret:
        raise ValueError("give the server's secret: AUTH_JWT_SECRET=... or --secret")
    _test.habits = Habits(think_s=options.think)
    _test.ws_rate_hz = options.ws_rate
    tag = f"locust-{secrets.token_hex(4)}"
    _test.org, _test.room_org = tag, f"{tag}-rooms"
    xml = chain_diagram(_TASKS)
    # Each diagram by its own owner: the server's write limit is per user.
    with _session() as http:
        _test.diagrams = [
            _create(http, _test.org, diagram_title(i, tag), xml, i) for i in range(options.diagrams)
        ]
        _test.rooms = [
            _create(http, _test.room_org, f"room {i} ({tag})", xml, i)
            for i in range(options.ws_rooms)
        ]
    _test.ready = True


def _create(http: requests.Session, org: str, title: str, xml: bytes, index: int) -> str:
    token = _test.token(f"locust-owner-{index}", org)
    answer = http.post(
        f"{_test.host}/api/diagrams",
        params={"title": title},
        data=xml,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
        timeout=_TIMEOUT_S,
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


def _session() -> requests.Session:
    http = requests.Session()
    http.trust_env = False  # a proxy from the environment must not see loopback calls
    return http


def _started(user: User) -> int:
    """This user's number; a failure (and no user) when the test could not be set up."""
    if not _test.ready:
        user.environment.events.request.fire(
            request_type="SETUP",
            name="test start",
            response_time=0,
            response_length=0,
            exception=RuntimeError("set-up failed: see the log"),
            context={},
        )
        raise StopUser
    return next(_numbers)


class RestUser(User):
    """A person using the REST API: the workflow's think times are its waits."""

    weight = 4

    def wait_time(self) -> float:
        return 0.0  # each call carries its own think time

    def on_start(self) -> None:
        number = _started(self)
        name = f"locust-user-{number}"
        self.workflow = Workflow(
            name, _test.token(name, _test.org), _test.diagrams, _test.habits, random.Random()
        )
        self.http = _session()

    def on_stop(self) -> None:
        self.http.close()

    @task
    def visit(self) -> None:
        visit = self.workflow.visit()
        try:
            call = next(visit)
            while True:
                gevent.sleep(call.think_s)
                call = visit.send(self._send(call))
        except StopIteration:
            return

    def _send(self, call: Call) -> Reply:
        started = time.perf_counter()
        try:
            answer = self.http.request(
                call.method,
                f"{_test.host}{call.path}",
                params=call.params,
                headers=call.headers,
                data=call.body,
                timeout=_TIMEOUT_S,
            )
        except requests.RequestException as exc:
            self._fire(call, call.op, started, 0, exc)
            return Reply(0)
        outcome = call.outcome(answer.status_code)
        failure = None
        if outcome == "error":
            failure = RuntimeError(f"HTTP {answer.status_code}: {answer.text[:200]}")
        name = call.op if outcome in ("ok", "error") else f"{call.op} {answer.status_code}"
        self._fire(call, name, started, len(answer.content), failure)
        return Reply(answer.status_code, answer.content, answer.headers.get("Retry-After"))

    def _fire(
        self, call: Call, name: str, started: float, length: int, exception: Exception | None
    ) -> None:
        self.environment.events.request.fire(
            request_type=call.method,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )


class EditorUser(User):
    """An editor in a live room: joins, renames its task at a rate, and times the others'
    renames when its document shows them."""

    weight = 1

    def wait_time(self) -> float:
        return 1 / _test.ws_rate_hz

    def on_start(self) -> None:
        self.number = _started(self)
        self.closing = False
        self.seq = 0
        room = self.number % len(_test.rooms)
        started = time.perf_counter()
        try:
            self.ws, state = self._join(_test.rooms[room])
        except (OSError, requests.RequestException, websocket.WebSocketException) as exc:
            self._fire("connect", started, 0, exc)
            raise StopUser from exc
        self._fire("connect", started, len(state), None)
        self.doc = EditingDoc(state)
        targets = find_targets(self.doc.doc)
        self.task = targets[(self.number // len(_test.rooms)) % len(targets)].task
        self._subscription = self.doc.doc.get(ELEMENTS, type=Map).observe_deep(self._on_change)
        self.receiver = gevent.spawn(self._receive)

    def _join(self, diagram_id: str) -> tuple[websocket.WebSocket, bytes]:
        """Room token, then connect and sync as y-websocket does; the server's state."""
        token = _test.token(f"locust-editor-{self.number}", _test.room_org)
        with _session() as http:
            answer = http.post(
                f"{_test.host}/api/diagrams/{diagram_id}/collaborate",
                headers={"Authorization": f"Bearer {token}"},
                timeout=_TIMEOUT_S,
            )
        answer.raise_for_status()
        grant = answer.json()
        url = check_loopback(str(grant["url"])).rstrip("/")
        ws = websocket.create_connection(
            f"{url}/{diagram_id}?token={grant['token']}", timeout=_TIMEOUT_S
        )
        ws.send_binary(encode_message(SyncStep1(_EMPTY_STATE_VECTOR)))
        while True:
            message = decode_message(_frame(ws))
            if isinstance(message, SyncStep1):
                ws.send_binary(encode_message(SyncStep2(_EMPTY_UPDATE)))
            elif isinstance(message, SyncStep2):
                ws.settimeout(None)  # a quiet room is not a failure
                return ws, message.update

    @task
    def rename(self) -> None:
        self.seq += 1
        stamp = Stamp(self.number, self.seq, time.monotonic_ns())
        try:
            self.ws.send_binary(encode_message(SyncUpdate(self.doc.rename(self.task, stamp))))
        except (OSError, websocket.WebSocketException) as exc:
            self._fire("send", time.perf_counter(), 0, exc)
            raise StopUser from exc

    def on_stop(self) -> None:
        self.closing = True
        if hasattr(self, "ws"):
            self.ws.close()
            self.receiver.kill()

    def _receive(self) -> None:
        try:
            while True:
                message = decode_message(_frame(self.ws))
                if isinstance(message, SyncUpdate | SyncStep2):
                    self.doc.doc.apply_update(message.update)  # renames show in _on_change
        except (OSError, websocket.WebSocketException, MalformedMessage) as exc:
            if not self.closing:
                self._fire("connection", time.perf_counter(), 0, exc)

    def _on_change(self, events: list[Any]) -> None:
        now = time.monotonic_ns()
        for event in events:
            keys = getattr(event, "keys", None)  # a map's changes by key
            change = keys.get("name") if isinstance(keys, dict) else None
            stamp = read_stamp(change.get("newValue")) if isinstance(change, dict) else None
            if stamp is not None and stamp.editor != self.number:
                self.environment.events.request.fire(
                    request_type="WS",
                    name="edit fan-out",
                    response_time=(now - stamp.sent_ns) / 1e6,
                    response_length=0,
                    exception=None,
                    context={},
                )

    def _fire(self, name: str, started: float, length: int, exception: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )


class ClosedByServer(websocket.WebSocketException):
    pass


def _frame(ws: websocket.WebSocket) -> bytes:
    """The next binary frame; ``ClosedByServer`` (with the close code) at a close frame."""
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            raise ClosedByServer(f"closed by the server: {code}")
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return bytes(data)
