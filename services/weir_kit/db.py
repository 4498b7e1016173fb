"""Async SQLAlchemy for a service: one SQLite file or one Postgres schema.

SQLite (embedded default): one file per service under ``WEIR_HOME``, WAL,
a busy timeout, and every write transaction of this process queued behind
one asyncio lock on one connection that begins ``IMMEDIATE``, so callers
never see "database is locked" (a second process waits on the busy timeout).
Reads use their own small pool and run beside writes thanks to WAL.

Postgres: asyncpg, one schema per service chosen through ``search_path``, so
the same table definitions serve both backends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

from weir_kit.settings import KitSettings

log = logging.getLogger(__name__)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


CommitListener = Callable[[], None]


class Database:
    """Engines and transactions of one service."""

    def __init__(self, settings: KitSettings, service: str) -> None:
        self.service = service
        self.settings = settings
        self._commit_listeners: list[CommitListener] = []
        self._write_lock = asyncio.Lock()
        if settings.uses_sqlite:
            self.dialect = "sqlite"
            self.schema: str | None = None
            if settings.database_url:
                url = settings.database_url
            else:
                Path(settings.home).mkdir(parents=True, exist_ok=True)
                url = f"sqlite+aiosqlite:///{Path(settings.home) / f'{service}.db'}"
            self.url = url
            self.read_engine = create_async_engine(url, echo=settings.database_echo, pool_size=4, max_overflow=4)
            self.write_engine = create_async_engine(url, echo=settings.database_echo, pool_size=1, max_overflow=0)
            self._tune_sqlite(self.read_engine, immediate=False)
            self._tune_sqlite(self.write_engine, immediate=True)
        else:
            self.dialect = "postgresql"
            self.schema = f"{settings.database_schema_prefix}{service}"
            self.url = settings.database_url or ""
            engine = create_async_engine(
                self.url,
                echo=settings.database_echo,
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_pool_size,
                pool_pre_ping=True,
                connect_args={"server_settings": {"search_path": self.schema}},
            )
            self.read_engine = self.write_engine = engine
        self._reads = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._writes = async_sessionmaker(self.write_engine, expire_on_commit=False)

    def _tune_sqlite(self, engine: AsyncEngine, *, immediate: bool) -> None:
        busy = self.settings.sqlite_busy_timeout_ms

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the driver so BEGIN is ours.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={busy}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` after every committed write transaction."""
        self._commit_listeners.append(listener)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; nothing it does is committed."""
        async with self._reads() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block exits cleanly."""
        if self.dialect == "sqlite":
            async with self._write_lock, self._writes() as session, session.begin():
                yield session
        else:
            async with self._writes() as session, session.begin():
                yield session
        for listener in self._commit_listeners:
            listener()

    async def ensure_schema(self) -> None:
        if self.schema is None:
            return
        async with self.write_engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))

    async def drop_schema(self) -> None:
        """Drop the service's Postgres schema (tests)."""
        if self.schema is None:
            return
        async with self.write_engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    async def dispose(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()
