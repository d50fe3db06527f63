"""The composition root's parts: everything long-lived that requests use.

``open_services`` builds the adapters the settings ask for (SQLite or Postgres,
folder or S3, local or Redis) inside one ``AsyncExitStack``, so shutdown closes
them in reverse order. Tests pass ``ServiceOverrides`` to swap parts.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from pycrdt import Doc
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from persistence.folder_blobs import FolderBlobStore
from persistence.models import Principal
from persistence.ports import BlobStore, DiagramStore
from persistence.redis_update_log import RedisUpdateLog
from persistence.sqlite_update_log import SqliteUpdateLog
from persistence.update_log import UpdateLog
from rooms.limits import Limits
from rooms.registry import RoomRegistry
from server.auth import UserTokenVerifier, load_or_create_secret
from server.bus import Bus, InProcessBus
from server.cpu_pool import CpuPool, ProcessCpuPool, ThreadCpuPool
from server.documents import DocumentLoader
from server.fanout import Fanout
from server.journal import Journal
from server.list_cache import ListCache, NullListCache, RedisListCache
from server.outbox import OutboxProcessor, open_outbox
from server.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from server.recovery import recover_unsaved_rooms
from server.redis_bus import RedisBus
from server.settings import LimitSettings, Settings, WsSettings
from server.snapshot_lock import LocalSnapshotLock, RedisSnapshotLock, SnapshotLock
from server.snapshots import LiveDoc, Snapshotter

log = logging.getLogger(__name__)


@dataclass
class ServiceOverrides:
    store: DiagramStore | None = None
    blobs: BlobStore | None = None
    limiter: RateLimiter | None = None
    list_cache: ListCache | None = None
    jwt_secret: str | None = None
    snapshot_lock: SnapshotLock | None = None


@dataclass
class Services:
    store: DiagramStore
    blobs: BlobStore
    limiter: RateLimiter
    list_cache: ListCache
    jwt_secret: str
    limits: LimitSettings
    ws: WsSettings
    rooms: RoomRegistry
    snapshots: Snapshotter
    update_log: UpdateLog
    journal: Journal
    rooms_loader: DocumentLoader
    bus: Bus
    fanout: Fanout
    auth_leeway_s: int
    user_tokens: UserTokenVerifier
    redis: aioredis.Redis | None = None
    _known_principals: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    outbox: OutboxProcessor | None = None

    async def remember_principal(self, principal: Principal) -> None:
        """Record a caller's org and user once per process, not on every request."""
        key = (principal.org_id, principal.user_id)
        if key in self._known_principals:
            self._known_principals.move_to_end(key)
            return
        await self.store.ensure_principal(principal)
        self._known_principals[key] = None
        if len(self._known_principals) > 10_000:
            self._known_principals.popitem(last=False)


@asynccontextmanager
async def open_services(
    settings: Settings, overrides: ServiceOverrides | None = None
) -> AsyncIterator[Services]:
    overrides = overrides or ServiceOverrides()
    async with AsyncExitStack() as stack:
        blobs: BlobStore
        if overrides.blobs is not None:
            blobs = overrides.blobs
        else:
            blobs = await stack.enter_async_context(_open_blobs(settings))
        store: DiagramStore
        if overrides.store is not None:
            store = overrides.store
        else:
            store = await stack.enter_async_context(_open_store(settings, blobs))
        if settings.migrate_on_start:
            await blobs.ensure_ready()
            await store.migrate()

        redis_client: aioredis.Redis | None = None
        if settings.redis.url is not None:
            # Short timeouts and few retries: a Redis outage should cost a request a
            # fraction of a second (limiter and cache fail open), not several seconds.
            redis_client = aioredis.Redis.from_url(
                settings.redis.url,
                socket_connect_timeout=2,
                socket_timeout=2,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
            )
            stack.push_async_callback(redis_client.aclose)

        limits = settings.limits
        limiter = overrides.limiter or _make_limiter(limits, redis_client)
        list_cache = overrides.list_cache or (
            RedisListCache(redis_client, ttl_s=limits.list_cache_ttl_s)
            if redis_client is not None
            else NullListCache()
        )
        update_log: UpdateLog
        if redis_client is not None:
            update_log = await stack.enter_async_context(RedisUpdateLog(redis_client))
        else:
            update_log = await stack.enter_async_context(SqliteUpdateLog(settings.update_log_path))
        bus: Bus
        snapshot_lock: SnapshotLock
        if redis_client is not None:
            bus = await stack.enter_async_context(RedisBus(redis_client))
            snapshot_lock = RedisSnapshotLock(redis_client)
        else:
            bus = await stack.enter_async_context(InProcessBus())
            snapshot_lock = LocalSnapshotLock()
        snapshot_lock = overrides.snapshot_lock or snapshot_lock
        cpu: CpuPool = ThreadCpuPool()
        if settings.snapshot.worker_processes:
            cpu = await stack.enter_async_context(
                ProcessCpuPool(
                    processes=settings.snapshot.worker_processes,
                    nice=settings.snapshot.worker_nice,
                )
            )
        snapshots = await stack.enter_async_context(
            Snapshotter(
                store,
                blobs,
                update_log,
                lock=snapshot_lock,
                idle_s=settings.snapshot.idle_s,
                max_interval_s=settings.snapshot.max_interval_s,
                conflict_attempts=settings.snapshot.conflict_attempts,
                xml_limits=limits.xml_limits(),
                cpu=cpu,
            )
        )
        # The outbox processor (thumbnails). Its outbox is the settings' database, so a
        # store swapped in by a test, on a database of its own, gets no processor.
        outbox = (
            await stack.enter_async_context(
                open_outbox(settings, store, blobs, on_thumbnail=list_cache.invalidate, cpu=cpu)
            )
            if settings.outbox.enabled and overrides.store is None
            else None
        )
        fanout = await stack.enter_async_context(Fanout(bus, snapshots))
        journal = Journal(update_log, snapshots, publish=fanout.publish_update)
        fanout.journal = journal
        loader = DocumentLoader(
            store,
            blobs,
            update_log,
            xml_limits=limits.xml_limits(),
            on_loaded=lambda opened: snapshots.loaded(
                opened.key,
                version=opened.version,
                state=opened.state,
                log_position=opened.log_position,
                replayed=opened.replayed > 0,
            ),
            fanout=fanout,
        )

        async def unloaded(key: str, doc: Doc[Any]) -> None:
            try:
                await snapshots.unloaded(key, doc)
            finally:
                journal.forget(key)
                await fanout.closed(key)

        # Entered after the snapshotter, so it closes first: unloading rooms at shutdown
        # takes their final snapshots while the snapshotter still runs.
        rooms = await stack.enter_async_context(
            RoomRegistry(
                loader,
                limits=room_limits(settings.ws),
                on_update=journal.accepted,
                on_unload=unloaded,
                on_open=fanout.opened,
                on_awareness=fanout.publish_awareness,
            )
        )
        snapshots.attach(
            lambda key: LiveDoc(room.doc, room.change) if (room := rooms.room(key)) else None
        )
        snapshots.run_in_background(recover_unsaved_rooms(update_log, loader, snapshots, rooms))
        secret = overrides.jwt_secret or load_or_create_secret(
            settings.auth.jwt_secret, settings.server.data_dir
        )
        yield Services(
            store=store,
            blobs=blobs,
            limiter=limiter,
            list_cache=list_cache,
            jwt_secret=secret,
            limits=limits,
            ws=settings.ws,
            rooms=rooms,
            snapshots=snapshots,
            update_log=update_log,
            journal=journal,
            rooms_loader=loader,
            bus=bus,
            fanout=fanout,
            auth_leeway_s=settings.auth.leeway_s,
            user_tokens=UserTokenVerifier(secret, leeway_s=settings.auth.leeway_s),
            redis=redis_client,
            outbox=outbox,
        )


def room_limits(ws: WsSettings) -> Limits:
    return Limits(
        max_message_bytes=ws.max_message_bytes,
        messages_per_s=ws.messages_per_s,
        message_burst=ws.messages_per_s * 2,
        bytes_per_s=ws.bytes_per_s,
        byte_burst=max(ws.bytes_per_s * 2, ws.max_message_bytes),
        clients_per_room=ws.clients_per_room,
        rooms_per_worker=ws.rooms_per_worker,
        outbox_size=ws.outbox_messages,
        awareness_coalesce_s=ws.awareness_window_ms / 1000,
        awareness_timeout_s=ws.awareness_timeout_s,
        unload_grace_s=ws.unload_grace_s,
    )


def _make_limiter(limits: LimitSettings, redis_client: aioredis.Redis | None) -> RateLimiter:
    if redis_client is not None:
        return RedisRateLimiter(
            redis_client, rate_per_s=limits.write_rate_per_s, burst=limits.write_burst
        )
    return LocalRateLimiter(rate_per_s=limits.write_rate_per_s, burst=limits.write_burst)


@asynccontextmanager
async def _open_blobs(settings: Settings) -> AsyncIterator[BlobStore]:
    if settings.uses_s3:
        from persistence.s3_blobs import S3BlobStore

        s3 = settings.s3
        assert s3.bucket is not None
        async with S3BlobStore(
            endpoint_url=s3.endpoint_url,
            bucket=s3.bucket,
            region=s3.region,
            access_key_id=s3.access_key_id,
            secret_access_key=s3.secret_access_key,
        ) as s3_store:
            yield s3_store
        return
    async with FolderBlobStore(settings.blob_folder) as folder:
        yield folder


@asynccontextmanager
async def _open_store(settings: Settings, blobs: BlobStore) -> AsyncIterator[DiagramStore]:
    inline_max = settings.limits.inline_xml_max_bytes
    if settings.database.url is not None:
        from persistence.postgres_store import PostgresDiagramStore

        async with PostgresDiagramStore(
            settings.database.url,
            blobs=blobs,
            inline_max_bytes=inline_max,
            pool_min=settings.database.pool_min,
            pool_max=settings.database.pool_max,
            app_role=settings.database.rls_role,
        ) as pg:
            yield pg
        return
    from persistence.sqlite_store import SqliteDiagramStore

    async with SqliteDiagramStore(
        settings.sqlite_path, blobs=blobs, inline_max_bytes=inline_max
    ) as sqlite:
        yield sqlite
