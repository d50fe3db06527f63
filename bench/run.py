"""One benchmark run: its shared counters, the live progress line, and the result file.

A scenario gets a :class:`Run`, joins clients through it, marks the measured window
(:meth:`Run.measuring`), and leaves the rest here: a progress line every second
(connections, messages per second, the p99 of that second, errors, server CPU and RSS), and
at the end one JSON document with the percentiles, throughput, errors by kind and the
server's CPU and memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any, TextIO, TypeVar

from bench.clients import Peer, Traffic
from bench.config import BenchConfig
from bench.gcwatch import GcPauses
from bench.procstat import ProcSampler, find_listening_pids, machine_info
from bench.servers import describe
from bench.stats import Recorder, percentile, summarize
from bench.tally import Tally
from bench.target import Api, OursTarget, SetupFailed, Target, UserTokens, ours, target_port

P = TypeVar("P", bound=Peer)


@dataclass(frozen=True, slots=True)
class _Mark:
    at: float
    traffic: Traffic
    cpu_s: dict[str, float]  # CPU seconds used so far by "server" and "driver"


class Run:
    def __init__(
        self, config: BenchConfig, target: Target | Api, *, log: TextIO = sys.stderr
    ) -> None:
        self.config = config
        # An Api alone (a scenario running another one inside its run): our server, with an
        # org of the inner run's own.
        self.target = ours(config, target) if isinstance(target, Api) else target
        self.id = self.target.label
        self.traffic = Traffic()
        self.errors = Tally()
        self.latency = Recorder()
        self.latency_meaning = ""
        self.recorders: dict[str, Recorder] = {}
        self.details: dict[str, Any] = {}
        self.notes: list[str] = []
        self.peers: list[Peer] = []
        self.gc_pauses = GcPauses()  # the load generator's own, while measuring
        self.planned = 0
        self.phase = "setup"
        self.timeline: list[dict[str, Any]] = []
        pids = list(config.server_pids) or find_listening_pids(target_port(config.target))
        if not pids:
            self.notes.append(
                "no server process found listening on the target port (another user's?): "
                "pass --server-pid for CPU and RSS"
            )
        self.server = ProcSampler(pids)
        # Not its descendants: a server started inside this process (tests) is not the driver.
        self.driver = ProcSampler([os.getpid()], descendants=False)
        self._log = log
        self._started = time.monotonic()
        self._started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._window: list[_Mark] = []  # the start and end of the measured window
        self._last_tick = (self._started, replace(self.traffic))
        self._rss: list[float] = []

    @property
    def api(self) -> Api:
        """Our server's REST API (scenarios that need it run only against ours)."""
        return self._ours().api

    @property
    def tokens(self) -> UserTokens:
        return self._ours().tokens

    def _ours(self) -> OursTarget:
        if not isinstance(self.target, OursTarget):
            raise SetupFailed(
                "needs_ours", f"{self.config.scenario} needs our REST API, not {self.target.kind}"
            )
        return self.target

    def recorder(self, name: str) -> Recorder:
        return self.recorders.setdefault(name, Recorder())

    def add_peer(self, peer: P) -> P:
        self.peers.append(peer)
        return peer

    @contextlib.asynccontextmanager
    async def measuring(self) -> AsyncIterator[None]:
        """The measured window: throughput and server CPU are averaged over it."""
        self.phase = "measure"
        # Everything set up so far (1,000 connections, documents) lives until the end: freeze
        # it out of the collector, so a full collection in the load generator does not stall
        # every client at once and read as server latency.
        gc.freeze()
        self._window = [self._mark()]
        try:
            with self.gc_pauses:
                yield
        finally:
            self._window.append(self._mark())
            self.phase = "drain"
            gc.unfreeze()

    def _mark(self) -> _Mark:
        return _Mark(
            time.monotonic(),
            replace(self.traffic),
            {"server": self.server.cpu_seconds(), "driver": self.driver.cpu_seconds()},
        )

    async def settle(self, done: Callable[[], bool]) -> None:
        """Wait up to ``drain_s`` for the last edits to arrive."""
        deadline = time.monotonic() + self.config.drain_s
        # Polled: "done" spans every observer, and the wait is short and bounded.
        while not done() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def close_peers(self) -> None:
        self.phase = "close"
        closing = [peer.close() for peer in self.peers]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.gather(*closing)

    # --- progress ----------------------------------------------------------------------------

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        then, before = self._last_tick
        elapsed = max(now - then, 1e-9)
        self._last_tick = (now, replace(self.traffic))
        window = sorted(self.latency.take_window())
        server, driver = self.server.sample(), self.driver.sample()
        if server.rss_mib is not None:
            self._rss.append(server.rss_mib)
        entry = {
            "t": round(now - self._started, 2),
            "phase": self.phase,
            "connected": self.traffic.connected,
            "out_per_s": round((self.traffic.frames_out - before.frames_out) / elapsed, 1),
            "in_per_s": round((self.traffic.frames_in - before.frames_in) / elapsed, 1),
            "samples": len(window),
            **{
                f"p{q}_ms": round(percentile(window, q), 3) if window else None
                for q in (50, 95, 99)
            },
            "errors": self.errors.total,
            "server_cpu_percent": server.cpu_percent,
            "server_rss_mib": server.rss_mib,
            "driver_cpu_percent": driver.cpu_percent,
        }
        self.timeline.append(entry)
        if self.config.progress:
            p99 = f"{entry['p99_ms']:.1f} ms" if window else "-"
            print(
                f"[{self.config.scenario} {entry['t']:6.1f}s {self.phase:7}] "
                f"conn {entry['connected']}/{self.planned}  out {entry['out_per_s']:.0f}/s  "
                f"in {entry['in_per_s']:.0f}/s  p99 {p99} (n {len(window)})  "
                f"err {entry['errors']}  server {_fmt(server.cpu_percent, '%')} "
                f"{_fmt(server.rss_mib, ' MiB')}  driver {_fmt(driver.cpu_percent, '%')}",
                file=self._log,
                flush=True,
            )

    # --- result ------------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        measured = [e for e in self.timeline if e["phase"] == "measure"]
        return {
            "scenario": self.config.scenario,
            "date": self._started_at,
            "target": self.config.target,
            "server_under_test": {**describe(self.config.server), "spawned": self.config.spawn},
            "params": self.config.public(),
            "machine": machine_info(),
            "versions": {name: version(name) for name in ("websockets", "pycrdt", "uvicorn")},
            "connections": {"planned": self.planned, "open_at_end": self.traffic.connected},
            "latency_ms": summarize(self.latency.samples),
            "latency_meaning": self.latency_meaning,
            **{name: summarize(rec.samples) for name, rec in self.recorders.items()},
            "throughput": self._throughput(),
            "errors": dict(sorted(self.errors.counts.items())),
            "error_count": self.errors.total,
            "error_examples": self.errors.examples,
            "server": {
                "pids": self.server.pids,
                "cpu_percent": self._cpu(measured, "server"),
                "rss_mib": {
                    "start": self._rss[0] if self._rss else None,
                    "max": max(self._rss) if self._rss else None,
                    "end": self._rss[-1] if self._rss else None,
                },
            },
            "driver": {
                "pid": os.getpid(),
                "cpu_percent": self._cpu(measured, "driver"),
                "gc_pause_ms": self.gc_pauses.summary(),
            },
            "details": self.details,
            "notes": self.notes,
            "timeline": self.timeline,
        }

    def _cpu(self, entries: list[dict[str, Any]], who: str) -> dict[str, Any]:
        """Mean over the measured window (100 % = one core; /proc counts in 10 ms ticks),
        and the busiest second in it."""
        mean = None
        if len(self._window) == 2:
            start, end = self._window
            if end.at > start.at:
                used = end.cpu_s[who] - start.cpu_s[who]
                mean = round(100 * used / (end.at - start.at), 1)
        values = [e[f"{who}_cpu_percent"] for e in entries if e[f"{who}_cpu_percent"] is not None]
        return {"mean": mean, "max_1s": max(values) if values else None}

    def _throughput(self) -> dict[str, Any]:
        if len(self._window) < 2:
            return {}
        start, end = self._window[0], self._window[-1]
        first, last = start.traffic, end.traffic
        seconds = max(end.at - start.at, 1e-9)
        delta = {key: value - getattr(first, key) for key, value in asdict(last).items()}
        return {
            "seconds": round(seconds, 3),
            "edits_sent": delta["edits_sent"],
            "edits_per_s": round(delta["edits_sent"] / seconds, 1),
            "messages_in_per_s": round(delta["frames_in"] / seconds, 1),
            "messages_out_per_s": round(delta["frames_out"] / seconds, 1),
            "bytes_in_per_s": round(delta["bytes_in"] / seconds),
            "bytes_out_per_s": round(delta["bytes_out"] / seconds),
        }


def _fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.0f}{unit}"
