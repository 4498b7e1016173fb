"""Settings shared by every service process (env prefix ``WEIR_``).

Built once at process start by the host and passed down; nothing in a
service reads the environment itself. Each service adds its own settings
class next to its code (e.g. ``weir_orchestration.settings``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path("~/.weir").expanduser()


class KitSettings(BaseSettings):
    """Where a service keeps its data, how it talks to NATS and serves gRPC."""

    model_config = SettingsConfigDict(env_prefix="WEIR_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    #: ``postgresql+asyncpg://...``; unset means one SQLite file per service under ``home``.
    database_url: str | None = None
    #: Postgres schema of a service = prefix + service name (e.g. ``weir_orchestration``).
    database_schema_prefix: str = "weir_"
    database_pool_size: int = 10
    database_echo: bool = False
    #: SQLite: how long a writer waits for another process's lock.
    sqlite_busy_timeout_ms: int = 30_000

    #: ``nats://host:port``; unset means the embedded nats-server under ``home``.
    nats_url: str | None = None
    events_stream: str = "WEIR_EVENTS"
    events_subject_prefix: str = "weir.events"
    events_duplicate_window_seconds: float = 120.0
    events_max_age_seconds: float = 7 * 24 * 3600.0

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 4270
    #: Largest request or response a server accepts; larger ones get RESOURCE_EXHAUSTED.
    grpc_max_message_bytes: int = 8 * 1024 * 1024
    #: When set, every RPC but health must carry ``authorization: Bearer <key>``.
    api_key: str | None = None
    http_port: int = 4280

    outbox_batch_size: int = 500
    outbox_poll_interval_seconds: float = 1.0
    outbox_max_backoff_seconds: float = 5.0
    #: Longest the outbox relay and the events persister wait, each round, for SyncRuns
    #: batches in progress in the same process (0: never wait).
    background_defer_max_seconds: float = 0.25

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url is None or self.database_url.startswith("sqlite")
