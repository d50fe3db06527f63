"""Configuration, read once at start-up from the environment (and ``.env``).

Settings are grouped; each group reads variables with its own prefix, so the
names operators already know work as they are: ``DATABASE_URL``, ``REDIS_URL``,
``S3_BUCKET``. Units are in the names. Bounds are validated, so a bad value
stops the process at start instead of misbehaving later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


def _group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", extra="ignore", validate_default=True
    )


class ServerSettings(BaseSettings):
    model_config = _group("SERVER_")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = False
    # Idle HTTP keep-alive: longer than clients and proxies keep idle connections, so the
    # server is not the side that closes one just as a request comes down it (uvicorn's
    # 5 s made 1,000 REST users reconnect every few requests, bench/README.md).
    keep_alive_s: int = Field(30, ge=1, le=3600)
    data_dir: Path = Path("data")
    # The studio's built files (``studio/dist`` of the source tree unless set).
    studio_dir: Path = Field(
        default_factory=lambda: Path(__file__).resolve().parents[1] / "studio" / "dist"
    )


class AuthSettings(BaseSettings):
    model_config = _group("AUTH_")

    # None on the embedded default: a random secret is kept in ``<data_dir>/jwt-secret``
    # so the server and ``bpmn-collab token`` agree without any set-up.
    jwt_secret: str | None = Field(None, min_length=32)
    leeway_s: int = Field(30, ge=0, le=600)
    default_token_ttl_s: int = Field(3600, ge=1, le=30 * 24 * 3600)


class DatabaseSettings(BaseSettings):
    model_config = _group("DATABASE_")

    url: str | None = None
    pool_min: int = Field(1, ge=0, le=100)
    pool_max: int = Field(10, ge=1, le=500)
    sqlite_path: Path | None = None
    migrate_on_start: bool | None = None
    rls_role: str | None = "bpmn_collab_app"

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.pool_min > self.pool_max:
            raise ValueError("DATABASE_POOL_MIN must not exceed DATABASE_POOL_MAX")
        if self.url is not None and not self.url.startswith(("postgres://", "postgresql://")):
            raise ValueError("DATABASE_URL must be a postgres:// or postgresql:// URL")
        return self


class RedisSettings(BaseSettings):
    model_config = _group("REDIS_")

    url: str | None = None


class S3Settings(BaseSettings):
    model_config = _group("S3_")

    endpoint_url: str | None = None
    bucket: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None


class LimitSettings(BaseSettings):
    model_config = _group("LIMITS_")

    max_xml_bytes: int = Field(32 * MiB, ge=1024, le=1024 * MiB)
    inline_xml_max_bytes: int = Field(2 * MiB, ge=0)
    max_xml_depth: int = Field(256, ge=8, le=10_000)
    max_xml_elements: int = Field(500_000, ge=10)
    write_rate_per_s: float = Field(5.0, gt=0)
    write_burst: int = Field(30, ge=1)
    list_cache_ttl_s: int = Field(60, ge=1, le=3600)

    def xml_limits(self) -> dict[str, int]:
        """The keyword arguments of ``bpmn.parse.parse`` and ``bpmn.inspect.inspect_bpmn``."""
        return {
            "max_bytes": self.max_xml_bytes,
            "max_depth": self.max_xml_depth,
            "max_elements": self.max_xml_elements,
        }


class WsSettings(BaseSettings):
    """Live rooms: room tokens, the WebSocket edge and per-room limits."""

    model_config = _group("WS_")

    room_token_ttl_s: int = Field(900, ge=30, le=24 * 3600)
    # A socket outliving its room token is told, then closed with 4401 this much later.
    token_expiry_grace_s: float = Field(30.0, ge=0, le=3600)
    # Empty allows any Origin (development). Comma-separated or a JSON list.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_url: str | None = None
    max_message_bytes: int = Field(1 * MiB, ge=1024, le=64 * MiB)
    messages_per_s: float = Field(200.0, gt=0)
    bytes_per_s: int = Field(8 * MiB, ge=1024)
    clients_per_room: int = Field(500, ge=1)
    rooms_per_worker: int = Field(2000, ge=1)
    outbox_messages: int = Field(1024, ge=8)
    awareness_window_ms: int = Field(50, ge=0, le=5000)
    awareness_timeout_s: float = Field(30.0, gt=0)
    unload_grace_s: float = Field(30.0, ge=0)
    permessage_deflate: bool = False

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value


class SnapshotSettings(BaseSettings):
    """When live rooms are written as versions."""

    model_config = _group("SNAPSHOT_")

    idle_s: float = Field(2.0, gt=0, le=3600)
    max_interval_s: float = Field(30.0, gt=0, le=24 * 3600)
    # Refresh-fold-retry rounds when other writes keep moving the version.
    conflict_attempts: int = Field(5, ge=1, le=100)
    # Rendering snapshots and drawing thumbnails run in worker processes at a lower CPU
    # priority (niceness added), so they never hold the GIL or a core against the live
    # rooms; 0 runs them in threads of the server's own process.
    worker_processes: int = Field(1, ge=0, le=16)
    worker_nice: int = Field(10, ge=0, le=19)


class OutboxSettings(BaseSettings):
    """The outbox processor each worker runs (thumbnails after every save)."""

    model_config = _group("OUTBOX_")

    enabled: bool = True
    # How long an idle processor waits before looking for new events again.
    poll_interval_s: float = Field(1.0, gt=0, le=300)
    batch_size: int = Field(20, ge=1, le=1000)
    # Claims before an event is parked for an operator (and counted).
    max_attempts: int = Field(8, ge=1, le=100)
    # A claimed event is held this long; a worker dying mid-event frees it when it ends.
    lease_s: float = Field(120.0, ge=1, le=24 * 3600)
    backoff_base_s: float = Field(2.0, ge=0, le=3600)
    backoff_max_s: float = Field(600.0, ge=0, le=24 * 3600)

    @model_validator(mode="after")
    def _backoff_bounds(self) -> OutboxSettings:
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError("OUTBOX_BACKOFF_BASE_S must not exceed OUTBOX_BACKOFF_MAX_S")
        return self


class Settings(BaseSettings):
    # The groups read their own prefixes; this prefix only keeps stray variables such as
    # SERVER or AUTH from being taken for whole groups.
    model_config = SettingsConfigDict(env_prefix="BPMN_COLLAB_", env_file=".env", extra="ignore")

    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    ws: WsSettings = Field(default_factory=WsSettings)
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.server.workers > 1 and self.redis.url is None:
            raise ValueError(
                "SERVER_WORKERS > 1 needs REDIS_URL: workers share rooms, rate limits and "
                "caches through Redis"
            )
        if self.server.workers > 1 and self.database.url is None:
            raise ValueError("SERVER_WORKERS > 1 needs DATABASE_URL (Postgres)")
        if self.database.url is not None and self.auth.jwt_secret is None:
            raise ValueError(
                "AUTH_JWT_SECRET must be set (32+ characters) when DATABASE_URL is set: "
                "every worker and instance must verify tokens with the same secret"
            )
        if self.limits.inline_xml_max_bytes > self.limits.max_xml_bytes:
            raise ValueError("LIMITS_INLINE_XML_MAX_BYTES must not exceed LIMITS_MAX_XML_BYTES")
        return self

    @property
    def sqlite_path(self) -> Path:
        return self.database.sqlite_path or self.server.data_dir / "bpmn-collab.db"

    @property
    def blob_folder(self) -> Path:
        return self.server.data_dir / "blobs"

    @property
    def update_log_path(self) -> Path:
        """The rooms' update log without Redis: a SQLite file of its own, so appends
        never wait for the store's write lock."""
        return self.server.data_dir / "update-log.db"

    @property
    def uses_postgres(self) -> bool:
        return self.database.url is not None

    @property
    def uses_s3(self) -> bool:
        return self.s3.bucket is not None

    @property
    def migrate_on_start(self) -> bool:
        if self.database.migrate_on_start is not None:
            return self.database.migrate_on_start
        return not self.uses_postgres
