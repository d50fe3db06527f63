"""``/metrics``: one worker's counters in the Prometheus text format.

The parts count in plain Python (``rooms.limits.Metrics``, the snapshotter's, the
journal's, the outbox processor's and the bus's counters, ``core.histogram``); a
collector reads them at scrape time. Nothing is registered in prometheus_client's global
registry: each app builds its own :class:`MetricsExporter` for its own ``Services``, so
several apps in one process (the tests) each report their own state.

Names are ``collab_<area>_<noun>[_<unit>]``; counters end in ``_total``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from core.errors import CollabError
from core.histogram import Histogram
from persistence.outbox import OutboxBacklog
from server.services import Services

log = logging.getLogger(__name__)

#: The classic text format every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "collab_"  # the house style: collab_<area>_<noun>_<unit>
# A scrape must not hang on a stuck database: Prometheus would drop every metric with it.
BACKLOG_TIMEOUT_S = 2.0


@dataclass
class EdgeMetrics:
    """What the WebSocket edge counts itself: sockets it serves, and the ones it refused
    before they reached a room (bad token, unknown diagram, origin), by close code."""

    connections_open: int = 0
    connections_opened: int = 0
    refused: Counter[int] = field(default_factory=Counter)


class ServicesCollector(Collector):
    """Reads one app's ``Services`` (and its edge counters) at each scrape."""

    def __init__(self, services: Services, edge: EdgeMetrics) -> None:
        self._services = services
        self._edge = edge
        # Read by the exporter just before a scrape (it needs the database, collect()
        # cannot await); None when there is no outbox here or it could not be read.
        self.backlog: OutboxBacklog | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._connections()
        yield from self._rooms()
        yield from self._snapshots()
        yield from self._journal()
        yield from self._outbox()
        yield from self._bus()

    def _connections(self) -> Iterator[Metric]:
        edge, rooms = self._edge, self._services.rooms.metrics
        yield _gauge("ws_connections", "WebSocket connections open", edge.connections_open)
        yield _counter(
            "ws_connections_accepted", "WebSocket connections accepted", edge.connections_opened
        )
        yield _by_code(
            "ws_refused",
            "WebSocket connections refused before joining a room, by close code",
            edge.refused,
        )
        yield _by_code(
            "ws_clients_closed",
            "Room clients closed, by close code (1000 and 1006 included)",
            rooms.clients_closed,
        )
        yield _counter("ws_received_messages", "WebSocket messages received", rooms.messages_in)
        yield _counter("ws_received_bytes", "WebSocket bytes received", rooms.bytes_in)
        yield _counter("ws_sent_messages", "WebSocket messages sent", rooms.messages_out)
        yield _counter("ws_sent_bytes", "WebSocket bytes sent", rooms.bytes_out)

    def _rooms(self) -> Iterator[Metric]:
        m = self._services.rooms.metrics
        yield _gauge(
            "rooms_open",
            "Rooms held by this worker (loading and closing included)",
            len(self._services.rooms),
        )
        yield _counter("rooms_opened", "Rooms opened", m.rooms_opened)
        yield _counter("rooms_unloaded", "Rooms unloaded", m.rooms_unloaded)
        yield _counter("rooms_failed", "Rooms that broke and closed their clients", m.rooms_failed)
        yield _counter("rooms_load_failures", "Room loads that failed", m.load_failures)
        yield _counter(
            "rooms_hook_failures", "Room hooks (log, unload) that raised", m.hook_failures
        )
        yield _counter(
            "rooms_joins_refused", "Joins refused: room full or too many rooms", m.joins_refused
        )
        yield _counter(
            "rooms_updates_received", "Updates from clients applied to a room", m.updates_applied
        )
        yield _counter(
            "rooms_updates_broadcast",
            "Updates fanned out to a room's local clients (once per update, not per client)",
            m.fanout_seconds.count,
        )
        yield _counter(
            "rooms_updates_repaired", "Updates the schema check had to repair", m.updates_repaired
        )
        yield _counter(
            "rooms_viewer_updates_refused",
            "Updates from read-only clients refused",
            m.viewer_updates_refused,
        )
        yield _counter("rooms_awareness_flushes", "Awareness broadcasts", m.awareness_flushes)
        yield _histogram(
            "rooms_fanout_seconds",
            "From an update's arrival to its broadcast to local clients (update log included)",
            m.fanout_seconds,
        )

    def _snapshots(self) -> Iterator[Metric]:
        m = self._services.snapshots.metrics
        outcomes = CounterMetricFamily(
            PREFIX + "snapshots",
            "Snapshot attempts by outcome: written, unchanged (equal XML), gave_up "
            "(conflicts kept coming), failed",
            labels=["outcome"],
        )
        for outcome in ("written", "unchanged", "gave_up", "failed"):
            outcomes.add_metric([outcome], getattr(m, outcome))
        yield outcomes
        yield _counter(
            "snapshot_conflicts", "Snapshots that met an unexpected version", m.conflicts
        )
        yield _counter(
            "snapshot_folds", "Versions written elsewhere folded into a live room", m.folded
        )
        yield _counter("snapshot_trim_failures", "Update-log trims that failed", m.trim_failures)
        yield _histogram(
            "snapshot_duration_seconds", "Time to render and write a version", m.duration_seconds
        )

    def _journal(self) -> Iterator[Metric]:
        m = self._services.journal.metrics
        yield _counter("journal_appended", "Updates appended to the update log", m.appended)
        yield _counter(
            "journal_append_failures",
            "Update-log appends that failed (kept for the next)",
            m.append_failures,
        )

    def _outbox(self) -> Iterator[Metric]:
        outbox = self._services.outbox
        if outbox is None:
            return
        m = outbox.metrics
        if self.backlog is not None:
            backlog = GaugeMetricFamily(
                PREFIX + "outbox_backlog_events",
                "Outbox events not delivered: pending (due, leased or waiting for a retry) "
                "or parked for an operator",
                labels=["state"],
            )
            backlog.add_metric(["pending"], self.backlog.pending)
            backlog.add_metric(["parked"], self.backlog.parked)
            yield backlog
        yield _counter("outbox_completed", "Outbox events delivered by this worker", m.completed)
        yield _counter("outbox_retried", "Outbox events released for a retry", m.retried)
        yield _counter("outbox_parked", "Outbox events this worker parked", m.parked)
        yield _counter("outbox_claim_failures", "Outbox claims that failed", m.claim_failures)
        yield _counter(
            "outbox_release_failures",
            "Outbox outcomes that could not be recorded",
            m.release_failures,
        )

    def _bus(self) -> Iterator[Metric]:
        # The bus is optional (and newer than this collector): report what it has.
        m = getattr(getattr(self._services, "bus", None), "metrics", None)
        if m is None:
            return
        for name, doc in (
            ("published", "Messages published to other workers"),
            ("publish_failures", "Publishes that failed"),
            ("received", "Messages received from other workers"),
            ("dropped", "Messages received and dropped (undecodable, room not open here)"),
            ("reconnects", "Reconnections to the bus"),
        ):
            value = getattr(m, name, None)
            if isinstance(value, int):
                yield _counter(f"bus_{name}", doc, value)
        lag = getattr(m, "lag_seconds", None)
        if isinstance(lag, Histogram):
            yield _histogram(
                "bus_lag_seconds", "From publish on one worker to receipt on this one", lag
            )


class MetricsExporter:
    """One app's registry: its services, plus the process's own (CPU, memory, GC)."""

    def __init__(self, services: Services, edge: EdgeMetrics) -> None:
        self._services = services
        self._collector = ServicesCollector(services, edge)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    async def render(self) -> bytes:
        backlog = await self._read_backlog()
        # No await between these two: a concurrent scrape cannot swap the backlog.
        self._collector.backlog = backlog
        return generate_latest(self.registry)

    async def _read_backlog(self) -> OutboxBacklog | None:
        outbox = self._services.outbox
        if outbox is None:
            return None
        try:
            async with asyncio.timeout(BACKLOG_TIMEOUT_S):
                return await outbox.backlog()
        except (CollabError, TimeoutError) as exc:
            # The database is down or stuck: /readyz says so; the other metrics still matter.
            why = exc.detail if isinstance(exc, CollabError) else "timed out"
            log.warning("metrics: outbox backlog unavailable: %s", why)
            return None


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _by_code(name: str, documentation: str, counts: Counter[int]) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, documentation, labels=["code"])
    for code, count in sorted(counts.items()):
        family.add_metric([str(code)], count)
    return family


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    # Bounds written as prometheus_client writes its own ("0.005", "60.0", "+Inf").
    buckets: list[tuple[str, float]] = [
        ("+Inf" if math.isinf(bound) else repr(float(bound)), count)
        for bound, count in histogram.cumulative()
    ]
    return HistogramMetricFamily(
        PREFIX + name, documentation, buckets=buckets, sum_value=histogram.total
    )
