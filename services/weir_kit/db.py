"""Async SQLAlchemy for a service: one SQLite file or one Postgres schema.

SQLite (embedded default): one file per service under ``WEIR_HOME``, WAL,
a busy timeout, and every write transaction of this process queued behind
one asyncio lock on one connection that begins ``IMMEDIATE``, so callers
never see "database is locked" (a second process waits on the busy timeout).
Reads use their own small pool and run beside writes thanks to WAL.

The write connection runs its statements on the event loop's thread
(:class:`_InlineWriteConnection`): inside a ``BEGIN IMMEDIATE`` transaction
in WAL mode a statement never waits for another process and writes only to
the page cache, so it takes microseconds, while a hop to aiosqlite's worker
thread and back costs tens of microseconds, and SQLAlchemy makes three or
four of them per statement. ``BEGIN`` (which may wait on the busy timeout),
``COMMIT`` (which may checkpoint the WAL), ``ROLLBACK``, ``PRAGMA`` and
closing still go through the worker thread, so the loop never waits on a
lock or on an fsync.

Postgres: asyncpg, one schema per service chosen through ``search_path``, so
the same table definitions serve both backends.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import DateTime, event, make_url, text
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

#: Statements the write connection still sends to aiosqlite's worker thread.
_THREADED_SQL = ("BEGIN", "COMMIT", "END", "ROLLBACK", "PRAGMA", "VACUUM", "SAVEPOINT", "RELEASE")
_THREADED_CALLS = {"commit", "rollback", "close", "executescript", "backup", "iterdump"}


def _threaded(fn: Any, args: tuple[Any, ...]) -> bool:
    name = getattr(fn, "__name__", "")
    conn = getattr(fn, "__self__", None)
    if isinstance(conn, sqlite3.Connection) and name in _THREADED_CALLS:
        # The pool's reset-on-return rollback after a commit has nothing to do.
        return conn.in_transaction or name not in ("commit", "rollback")
    if name in ("execute", "executemany") and args and isinstance(args[0], str):
        return args[0].lstrip()[:9].upper().startswith(_THREADED_SQL)
    return False


class _InlineWriteConnection(aiosqlite.Connection):
    """aiosqlite whose short in-transaction statements run on the loop's thread (see the module doc).

    Safe because SQLAlchemy awaits every call of a connection in turn, so the
    worker thread and the loop never use the sqlite3 connection at once
    (it is opened with ``check_same_thread=False``).
    """

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if _threaded(fn, args):
            return await super()._execute(fn, *args, **kwargs)
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _inline_connector(url: str) -> Callable[[], Any]:
    database = make_url(url).database or ":memory:"

    def connect() -> aiosqlite.Connection:
        conn = _InlineWriteConnection(
            lambda: sqlite3.connect(database, check_same_thread=False, isolation_level=None), 64
        )
        conn._thread.daemon = True
        return conn

    return connect


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
            self.write_engine = create_async_engine(
                url,
                echo=settings.database_echo,
                pool_size=1,
                max_overflow=0,
                async_creator=_inline_connector(url),
            )
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
