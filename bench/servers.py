"""Servers under test as child processes on a loopback port: ours and its peers.

- ``ours``: ``bpmn-collab serve``, the embedded default (SQLite, folder blobs) on a throw-away
  data folder, a random ``AUTH_JWT_SECRET``, and the limits ``bench/README.md`` runs with
  (2,000 clients per room, a write burst of 1,000 at 100/s); every other setting is the
  default: the ``SERVER_``/``DATABASE_``/... variables of the caller's environment are not
  passed on, nor is a ``.env`` read (the process runs in the throw-away folder).
- ``pycrdt-websocket``: its ``WebsocketServer`` as ASGI app under uvicorn
  (``bench/peers/pycrdt_websocket_server.py``);
- ``y-websocket``: the reference ``@y/websocket-server`` (``bench/peers/y-websocket.mjs``);
- ``hocuspocus``: ``@hocuspocus/server`` (``bench/peers/hocuspocus.mjs``).

The peers run with their own defaults, no persistence. Each process leads its own process
group: stopping sends SIGTERM to the group, then SIGKILL after a grace period, so nothing it
started outlives it. Start-up is bounded in time, only loopback addresses are bound, and the
process can be pinned to a set of cores (``taskset``, applied before the program starts, so
every thread it creates inherits it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TextIO

import httpx

from bench.config import SERVER_KINDS, BenchConfig
from bench.target import TargetRefused
from core.errors import Unavailable

PEERS_DIR: Final = Path(__file__).resolve().parent / "peers"
REPO: Final = Path(__file__).resolve().parents[1]
LOOPBACK_HOSTS: Final = ("127.0.0.1", "::1", "localhost")
NODE_SCRIPTS: Final = {"y-websocket": "y-websocket.mjs", "hocuspocus": "hocuspocus.mjs"}
# Settings of ours that the caller's environment must not change: "embedded default".
_OUR_PREFIXES: Final = (
    "SERVER_", "AUTH_", "DATABASE_", "REDIS_", "S3_", "LIMITS_", "WS_", "SNAPSHOT_",
    "OUTBOX_", "BPMN_COLLAB_",
)  # fmt: skip
_OUR_SETTINGS: Final = {
    "WS_CLIENTS_PER_ROOM": "2000",
    "LIMITS_WRITE_BURST": "1000",
    "LIMITS_WRITE_RATE_PER_S": "100",
}
_POLL_S: Final = 0.05


class ServerFailed(Unavailable):
    code = "bench_server_failed"
    title = "Server under test failed"


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just had free on ``host`` (another process may take it meanwhile)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One server under test. ``async with ServerProcess("y-websocket") as server:`` starts
    it and waits until it listens; leaving the block stops it and removes its folder."""

    def __init__(
        self,
        kind: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        cpus: Collection[int] = (),
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 15.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if kind not in SERVER_KINDS:
            raise ValueError(f"server kind must be one of {', '.join(SERVER_KINDS)}")
        if host not in LOOPBACK_HOSTS:
            raise TargetRefused(f"{host!r} is not loopback: servers under test bind only there")
        if any(cpu < 0 or cpu >= (os.cpu_count() or 1) for cpu in cpus):
            raise ValueError(f"cpus must be in 0..{(os.cpu_count() or 1) - 1}")
        self.kind = kind
        self.host = host
        self.port = port or free_port(host)
        self.cpus = tuple(sorted(set(cpus)))
        self.secret = secrets.token_urlsafe(36) if kind == "ours" else None
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._env = dict(env or {})
        self._dir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """The driver's ``--target``: the REST base of ours, the WebSocket base of a peer."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'http' if self.kind == 'ours' else 'ws'}://{host}:{self.port}"

    @property
    def pids(self) -> list[int]:
        """The processes to sample for CPU and memory (their children are sampled too)."""
        return [self._process.pid] if self._process is not None else []

    @property
    def log_path(self) -> Path | None:
        return None if self._dir is None else self._dir / "server.log"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("the server is already running")
        command = self._command()
        if self.cpus:
            taskset = shutil.which("taskset")
            if taskset is None:
                raise ServerFailed("CPU pinning needs `taskset` (util-linux) on PATH")
            command = [taskset, "--cpu-list", ",".join(map(str, self.cpus)), *command]
        self._dir = Path(tempfile.mkdtemp(prefix=f"bench-{self.kind}-"))
        log_path = self._dir / "server.log"
        with log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                cwd=self._dir,
                env=self._environment(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop(keep_dir=True)
            raise

    async def stop(self, *, keep_dir: bool = False) -> None:
        """SIGTERM to the process group, SIGKILL after the grace period; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.returncode is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    async with asyncio.timeout(self._stop_timeout_s):
                        await process.wait()
                except TimeoutError:
                    _signal_group(process.pid, signal.SIGKILL)
                    await process.wait()
            # Whatever the leader left behind in its group goes too.
            _signal_group(process.pid, signal.SIGKILL)
        if self._dir is not None and not keep_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def exited(self) -> int | None:
        """The exit status if the server stopped by itself, else None."""
        return None if self._process is None else self._process.returncode

    def output(self, limit: int = 4000) -> str:
        """The end of what the server printed (its log), for error messages."""
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return path.read_bytes()[-limit:].decode(errors="replace")

    def versions(self) -> dict[str, Any]:
        return describe(self.kind)

    # --- inside --------------------------------------------------------------------------------

    def _command(self) -> list[str]:
        port = str(self.port)
        if self.kind == "ours":
            return [sys.executable, "-m", "server", "serve", "--host", self.host, "--port", port]
        if self.kind == "pycrdt-websocket":
            script = PEERS_DIR / "pycrdt_websocket_server.py"
            return [sys.executable, str(script), self.host, port]
        node = shutil.which("node")
        if node is None:
            raise ServerFailed(f"{self.kind} needs Node.js (`node` on PATH)")
        if not node_packages_current():
            raise ServerFailed(
                f"{self.kind} needs the packages of {PEERS_DIR}: "
                f"run `(cd {PEERS_DIR} && npm ci --no-audit --no-fund)`"
            )
        return [node, str(PEERS_DIR / NODE_SCRIPTS[self.kind]), self.host, port]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.kind == "ours":
            assert self._dir is not None
            assert self.secret is not None
            env = {k: v for k, v in env.items() if not k.startswith(_OUR_PREFIXES)}
            env |= {
                "SERVER_DATA_DIR": str(self._dir / "data"),
                "AUTH_JWT_SECRET": self.secret,
                **_OUR_SETTINGS,
            }
        return env | self._env

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        # trust_env=False: no proxy from the environment between us and loopback.
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
            # Polled with a deadline: a child's start-up offers nothing to await.
            while time.monotonic() < deadline:
                if self.exited is not None:
                    raise ServerFailed(
                        f"{self.kind} exited ({self.exited}) while starting:\n{self.output()}"
                    )
                if await self._ready(http):
                    return
                await asyncio.sleep(_POLL_S)
        raise ServerFailed(
            f"{self.kind} did not get ready within {self._start_timeout_s:.0f} s:\n{self.output()}"
        )

    async def _ready(self, http: httpx.AsyncClient) -> bool:
        if self.kind == "ours":
            try:
                return (await http.get(f"{self.url}/healthz")).status_code == 200
            except httpx.TransportError:
                return False
        # The peers print "ready HOST PORT" once they listen.
        return any(line.startswith("ready ") for line in self.output(1 << 16).splitlines())


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group is the one start() created (start_new_session): its id is the leader's pid,
    # so this reaches only what that server started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.asynccontextmanager
async def spawned_for(config: BenchConfig, *, log: TextIO) -> AsyncIterator[BenchConfig]:
    """``config`` as it is, or with ``spawn``: the server of its kind started for the run,
    and ``config`` aimed at it (URL, our secret, its pid to sample); stopped at the end."""
    if not config.spawn:
        yield config
        return
    async with ServerProcess(config.server, cpus=config.server_cpus) as server:
        pinned = f", pinned to cores {','.join(map(str, server.cpus))}" if server.cpus else ""
        print(f"started {server.kind} on {server.url} (pid {server.pids[0]}{pinned})", file=log)
        try:
            yield replace(
                config,
                target=server.url,
                secret=server.secret or config.secret,
                server_pids=tuple(server.pids),
            )
        finally:
            if server.exited is not None:
                print(
                    f"{server.kind} exited ({server.exited}) during the run:\n{server.output()}",
                    file=log,
                )


# --- Node packages --------------------------------------------------------------------------


def node_packages_current() -> bool:
    """Whether ``bench/peers/node_modules`` was installed from the current lockfile."""
    installed = PEERS_DIR / "node_modules" / ".package-lock.json"  # written by npm ci/install
    lockfile = PEERS_DIR / "package-lock.json"
    return installed.exists() and installed.stat().st_mtime >= lockfile.stat().st_mtime


def install_node_packages(timeout_s: float = 300) -> None:
    """``npm ci`` in ``bench/peers``; ``ServerFailed`` with npm's output if it fails."""
    npm = shutil.which("npm")
    if npm is None:
        raise ServerFailed("`npm` is not on PATH")
    try:
        result = subprocess.run(  # noqa: S603 - npm from PATH, fixed arguments
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=PEERS_DIR,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerFailed(f"`npm ci` in {PEERS_DIR} took over {timeout_s:.0f} s") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise ServerFailed(f"`npm ci` in {PEERS_DIR} failed:\n{output}")


# --- versions -------------------------------------------------------------------------------


def describe(kind: str) -> dict[str, Any]:
    """The kind and version of a server under test, as installed here (which is what
    :class:`ServerProcess` runs), with the packages that shape its behaviour."""
    packages: dict[str, str | None]
    if kind == "ours":
        packages = {"bpmn-collab": _python_version("bpmn-collab"), **_git_commit()}
        main = "bpmn-collab"
    elif kind == "pycrdt-websocket":
        packages = {
            name: _python_version(name) for name in ("pycrdt-websocket", "pycrdt", "uvicorn")
        }
        main = "pycrdt-websocket"
    else:
        main = "@y/websocket-server" if kind == "y-websocket" else "@hocuspocus/server"
        packages = {
            main: _node_version(main),
            "yjs": _node_version("yjs"),
            "ws": _node_version("ws", within=main),
            "node": _node_runtime(),
        }
    return {"kind": kind, "version": packages[main], "packages": packages}


def _python_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _node_version(name: str, *, within: str | None = None) -> str | None:
    """The version of ``name`` in ``bench/peers/node_modules`` (as ``within`` resolves it)."""
    modules = PEERS_DIR / "node_modules"
    candidates = [modules / name / "package.json"]
    if within is not None:
        candidates.insert(0, modules / within / "node_modules" / name / "package.json")
    for path in candidates:
        with contextlib.suppress(OSError, ValueError):
            found = json.loads(path.read_text()).get("version")
            return str(found) if found else None
    return None


def _node_runtime() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(  # noqa: S603 - node from PATH, fixed arguments
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip() or None
    return None


def _git_commit() -> dict[str, str | None]:
    """The commit of the working tree ``bpmn-collab serve`` runs from, "+dirty" if changed."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return {"commit": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(  # noqa: S603 - git from PATH, fixed arguments
            [git, "rev-parse", "--short", "HEAD"],
            cwd=REPO, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(  # noqa: S603 - git from PATH, fixed arguments
            [git, "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        return {"commit": f"{head}+dirty" if changed else head}
    return {"commit": None}
