"""Join storm and idle cost of live rooms, against a real server process on loopback.

Starts ``bpmn-collab serve`` on a free port with a throw-away data folder, creates
a diagram of about 1,000 BPMN elements, then:

- join: N clients open the room at the same moment; time from connect to sync
  step 2 (the full state) for each;
- idle: M more clients join and stay idle; the server's RSS before and after,
  divided by M, is the memory per idle connection.

    .venv/bin/python -m bench.ws_join [--join 100] [--idle 300] [--tasks 500]

Only loopback is ever targeted; every wait is bounded; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.diagrams import chain_diagram
from rooms.protocol import SyncStep1, SyncStep2, decode_message, encode_message
from server.auth import issue_user_token

_SECRET = "bench-secret-" + "b" * 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _join(url: str, room: str, token: str) -> tuple[float, ClientConnection]:
    started = time.perf_counter()
    ws = await connect(f"{url}/{room}?token={token}", max_size=64 * 1024 * 1024, open_timeout=30)
    await ws.send(encode_message(SyncStep1(b"\x00")))
    async with asyncio.timeout(60):
        while True:
            frame = await ws.recv()
            assert isinstance(frame, bytes)
            if isinstance(decode_message(frame), SyncStep2):
                return (time.perf_counter() - started) * 1000, ws


async def _run(args: argparse.Namespace, base: str, pid: int) -> None:
    token = issue_user_token(_SECRET, user_id="bench", org_id="bench-org", ttl_s=3600)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        xml = chain_diagram(args.tasks)
        created = await http.post(
            "/api/diagrams",
            params={"title": "bench"},
            content=xml,
            headers={"Content-Type": "application/xml"},
        )
        created.raise_for_status()
        diagram = created.json()
        grant = (await http.post(f"/api/diagrams/{diagram['id']}/collaborate")).json()

    # Open the room once so the join storm measures joins, not the first load from XML.
    _, first = await _join(grant["url"], diagram["id"], grant["token"])
    joins = await asyncio.gather(
        *(_join(grant["url"], diagram["id"], grant["token"]) for _ in range(args.join))
    )
    times = sorted(ms for ms, _ in joins)
    rss_before = _rss_kib(pid)
    idle = [await _join(grant["url"], diagram["id"], grant["token"]) for _ in range(args.idle)]
    await asyncio.sleep(1)  # let the server settle its buffers before reading RSS
    rss_after = _rss_kib(pid)
    for _, ws in [*joins, *idle, (0.0, first)]:
        with contextlib.suppress(Exception):
            await ws.close()

    print(f"{platform.node()} · Python {platform.python_version()} · {os.cpu_count()} cores")
    print(
        f"diagram: {diagram['elementCount']} BPMN elements, {len(xml) / 1024:.0f} KiB XML; "
        f"{args.join} simultaneous joins"
    )
    print(
        f"join to synced (ms): p50 {statistics.median(times):.0f}, "
        f"p95 {times[int(len(times) * 0.95) - 1]:.0f}, max {times[-1]:.0f}"
    )
    per_connection = (rss_after - rss_before) / max(args.idle, 1)
    print(
        f"idle connections: {args.idle}, server RSS {rss_before / 1024:.1f} -> "
        f"{rss_after / 1024:.1f} MiB, {per_connection:.1f} KiB per connection"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--join", type=int, default=100)
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=500, help="tasks (x2 = BPMN elements)")
    args = parser.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {
            **os.environ,
            "SERVER_DATA_DIR": data,
            "AUTH_JWT_SECRET": _SECRET,
            "LIMITS_WRITE_BURST": "1000",
            "SERVER_LOG_LEVEL": "warning",
        }
        server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "server", "serve", "--port", str(port)], env=env
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(base + "/healthz", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.1)
            asyncio.run(_run(args, base, server.pid))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
