"""What a benchmark run is asked to do: the ``bpmn-collab bench`` arguments, checked.

Everything is bounded (clients, rooms, rate, duration), so a typo cannot start a run that
never ends or opens a million sockets.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

SCENARIOS: Final = ("rooms", "broadcast", "join", "rest", "memory")
# N means editors (rooms), observers (broadcast), joining clients (join), REST users (rest)
# or idle connections (memory).
_DEFAULT_CLIENTS: Final = {"rooms": 100, "broadcast": 100, "join": 50, "rest": 100, "memory": 1000}
_DEFAULT_RATE_HZ: Final = {"rooms": 1.0, "broadcast": 10.0, "join": 1.0, "rest": 1.0, "memory": 1.0}
# memory: --duration is how long each measurement settles, not a window of load.
_DEFAULT_DURATION_S: Final = {"memory": 3.0}
_DEFAULT_DURATION_FALLBACK_S: Final = 30.0
# memory: idle clients per room by default, under ours' default cap of 500 per room.
_IDLE_PER_ROOM: Final = 250
MAX_DOCUMENTS: Final = 1000
MAX_CLIENTS: Final = 10_000
MAX_DURATION_S: Final = 3600.0
# The servers the WebSocket scenarios run against (bench/servers.py starts each of them).
SERVER_KINDS: Final = ("ours", "pycrdt-websocket", "y-websocket", "hocuspocus")
PEER_SCENARIOS: Final = ("rooms", "broadcast", "join", "memory")  # rest needs our REST API


@dataclass(frozen=True, slots=True)
class BenchConfig:
    scenario: str
    target: str = "http://127.0.0.1:8000"
    server: str = "ours"  # one of SERVER_KINDS
    spawn: bool = False  # start the server (bench/servers.py) on a free port, stop it after
    server_cpus: tuple[int, ...] = ()  # with spawn: pin the server to these cores
    clients: int = 100
    rooms: int = 1
    rate_hz: float = 1.0
    duration_s: float = 30.0
    out: Path | None = None
    server_pids: tuple[int, ...] = ()
    secret: str | None = None
    token: str | None = None
    tasks: int = 50
    sample: int = 0
    diagram: Path | None = None
    connect_concurrency: int = 50
    setup_timeout_s: float = 300.0
    drain_s: float = 5.0
    origin: str | None = None
    progress: bool = True
    # rest: mean think time, diagrams shared by the users, and the WebSocket load beside them.
    think_s: float = 5.0
    diagrams: int = 50
    ws_editors: int = 20
    ws_rooms: int = 2
    ws_rate_hz: float = 1.0
    # memory: rooms of a 1,000-element diagram, one client each.
    documents: int = 50

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
        if self.server not in SERVER_KINDS:
            raise ValueError(f"server must be one of {', '.join(SERVER_KINDS)}")
        if self.server != "ours" and self.scenario not in PEER_SCENARIOS:
            raise ValueError(f"{self.scenario} must be run with --server ours")
        if self.server_cpus and not self.spawn:
            raise ValueError("server CPUs must be given with --spawn")
        checks = (
            (1 <= self.clients <= MAX_CLIENTS, f"clients must be 1..{MAX_CLIENTS}"),
            (1 <= self.rooms <= self.clients, "rooms must be 1..clients"),
            (0 < self.rate_hz <= 100, "rate must be in (0, 100] edits per second"),
            (0 < self.duration_s <= MAX_DURATION_S, f"duration must be in (0, {MAX_DURATION_S}]"),
            (1 <= self.tasks <= 5000, "tasks must be 1..5000"),
            (0 <= self.sample <= self.clients, "sample must be 0..clients"),
            (1 <= self.connect_concurrency <= 1000, "connect concurrency must be 1..1000"),
            (0 < self.setup_timeout_s <= MAX_DURATION_S, "setup timeout out of range"),
            (0 <= self.drain_s <= 60, "drain must be 0..60 s"),
            (0 < self.think_s <= 600, "think time must be in (0, 600] s"),
            (1 <= self.diagrams <= MAX_CLIENTS, f"diagrams must be 1..{MAX_CLIENTS}"),
            (0 <= self.ws_editors <= MAX_CLIENTS, f"ws editors must be 0..{MAX_CLIENTS}"),
            (
                self.ws_rooms >= 1 and (self.ws_editors == 0 or self.ws_rooms <= self.ws_editors),
                "ws rooms must be 1..ws editors",
            ),
            (0 < self.ws_rate_hz <= 100, "ws rate must be in (0, 100] edits per second"),
            (0 <= self.documents <= MAX_DOCUMENTS, f"documents must be 0..{MAX_DOCUMENTS}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def public(self) -> dict[str, Any]:
        """The parameters for the result file, without the secret or the token."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values["secret"] = "<given>" if self.secret else None
        values["token"] = "<given>" if self.token else None
        values["out"] = str(self.out) if self.out else None
        values["diagram"] = str(self.diagram) if self.diagram else None
        values["server_pids"] = list(self.server_pids)
        return values


def add_arguments(parser: argparse.ArgumentParser, scenario: str) -> None:
    """The options of one scenario's verb (``bpmn-collab bench rooms ...``)."""
    parser.set_defaults(scenario=scenario)
    parser.add_argument(
        "--target", default="http://127.0.0.1:8000", help="server base URL (loopback only)"
    )
    parser.add_argument(
        "--server",
        choices=SERVER_KINDS,
        default="ours",
        help="kind of server behind --target (peers: a room is a URL path, no token)",
    )
    parser.add_argument(
        "--spawn",
        action="store_true",
        help="start the --server kind on a free loopback port for this run (ignores --target)",
    )
    parser.add_argument(
        "--server-cpus",
        type=cpu_list,
        default=(),
        help="with --spawn: cores to pin the server to, e.g. 1 or 0,1",
    )
    parser.add_argument(
        "-n",
        "--editors",
        "--observers",
        "--clients",
        "--users",
        dest="clients",
        type=int,
        help="editors (rooms), observers (broadcast), joining clients (join), REST users "
        "(rest) or idle connections (memory); default 100, 100, 50, 100, 1000",
    )
    parser.add_argument(
        "--rooms",
        type=int,
        help="rooms (rooms scenario; default 10), rooms of the idle clients (memory; default "
        f"one per {_IDLE_PER_ROOM})",
    )
    parser.add_argument(
        "--rate", type=float, help="edits per second per editor (default 1; broadcast 10)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds of editing (default 30; join: storm cap; memory: seconds each "
        "measurement settles, default 3)",
    )
    parser.add_argument("--out", type=Path, help="result JSON (default bench-SCENARIO-TIME.json)")
    parser.add_argument(
        "--server-pid",
        dest="server_pids",
        type=int,
        action="append",
        default=[],
        help="server process to sample (repeatable; default: whoever listens on the port)",
    )
    parser.add_argument(
        "--secret", help="the server's AUTH_JWT_SECRET, to mint user tokens (or set it)"
    )
    parser.add_argument("--token", help="a user token, when no secret is given")
    parser.add_argument("--tasks", type=int, default=50, help="tasks per generated diagram")
    parser.add_argument(
        "--sample",
        type=int,
        default=50,
        help="broadcast: observers that apply updates into a pycrdt Doc (all count)",
    )
    parser.add_argument(
        "--diagram", type=Path, help="join: BPMN file (default: largest MIWG corpus file)"
    )
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--setup-timeout", type=float, default=300.0)
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait for stragglers")
    parser.add_argument("--origin", help="Origin header (when WS_ALLOWED_ORIGINS is set)")
    parser.add_argument("--quiet", action="store_true", help="no live progress lines")
    rest = parser.add_argument_group("rest scenario")
    rest.add_argument(
        "--think", type=float, default=5.0, help="mean think time before each request, s"
    )
    rest.add_argument("--diagrams", type=int, default=50, help="diagrams the users share")
    rest.add_argument(
        "--ws-editors", type=int, default=20, help="editors of the WebSocket load beside (0: none)"
    )
    rest.add_argument("--ws-rooms", type=int, default=2, help="rooms of that load")
    rest.add_argument("--ws-rate", type=float, default=1.0, help="edits/s per editor of that load")
    memory = parser.add_argument_group("memory scenario")
    memory.add_argument(
        "--documents",
        type=int,
        default=50,
        help="rooms holding a 1,000-element diagram, one client each (0: skip that part)",
    )


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    scenario: str = args.scenario
    clients = _DEFAULT_CLIENTS[scenario] if args.clients is None else args.clients
    duration = args.duration
    if duration is None:
        duration = _DEFAULT_DURATION_S.get(scenario, _DEFAULT_DURATION_FALLBACK_S)
    return BenchConfig(
        scenario=scenario,
        target=args.target,
        server=args.server,
        spawn=args.spawn,
        server_cpus=args.server_cpus,
        clients=clients,
        rooms=_rooms(scenario, clients, args.rooms),
        rate_hz=_DEFAULT_RATE_HZ[scenario] if args.rate is None else args.rate,
        duration_s=duration,
        out=args.out,
        server_pids=tuple(args.server_pids),
        secret=args.secret or os.environ.get("AUTH_JWT_SECRET") or None,
        token=args.token,
        tasks=args.tasks,
        sample=min(args.sample, max(clients, 0)),
        diagram=args.diagram,
        connect_concurrency=args.connect_concurrency,
        setup_timeout_s=args.setup_timeout,
        drain_s=args.drain,
        origin=args.origin,
        progress=not args.quiet,
        think_s=args.think,
        diagrams=args.diagrams,
        ws_editors=args.ws_editors,
        ws_rooms=args.ws_rooms,
        ws_rate_hz=args.ws_rate,
        documents=args.documents,
    )


def _rooms(scenario: str, clients: int, given: int | None) -> int:
    if given is not None and scenario in ("rooms", "memory"):
        return given
    if scenario == "rooms":
        return min(10, clients)
    if scenario == "memory":
        return max(1, -(-clients // _IDLE_PER_ROOM))
    return 1


def cpu_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of core numbers: {text!r}") from None
