"""Async SQLAlchemy for a service: one SQLite file or one Postgres schema.

SQLite (embedded default): one file per service under ``WEIR_HOME``, WAL,
a busy timeout, and every write transaction of this process queued behind
one asyncio lock on one connection that begins ``IMMEDIATE``, so callers
never see "database is locked" (a second process waits on the busy timeout).
Reads use their own small pool and run beside writes thanks to WAL.

The write connection runs its statements on the event loop's thread
(:class:`InlineWriteConnection`). In WAL mode with ``synchronous=NORMAL`` a
write transaction never fsyncs and, once ``BEGIN IMMEDIATE`` holds the write
lock, never waits for another process, so each statement takes microseconds,
while a hop to aiosqlite's worker thread and back costs 50-200 us and
SQLAlchemy makes three or four per statement (a state proposal made ~30).
Two things could still block, and are kept off the loop: a ``BEGIN`` that
finds the file locked by another process is retried on the worker thread
with the busy timeout, and checkpoints (the only fsyncs) are not run by the
committing connection (``wal_autocheckpoint=0``) but by a read connection on
its own thread after every burst of commits (:meth:`Database._checkpoint`).

Postgres: asyncpg, one schema per service chosen through ``search_path``, so
the same table definitions serve both backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import DateTime, event, make_url, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
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


#: Recent answers of :func:`sqlite_utc_text`: a batch binds the same few instants many times
#: (its ``now``, each state's timestamp in the state row and again in its run's row).
_UTC_TEXT: dict[datetime, str] = {}
_UTC_TEXT_MAX = 4096


def sqlite_utc_text(value: datetime | None) -> str | None:
    """What ``UtcDateTime`` stores on SQLite (SQLAlchemy's text form of the naive UTC time), built
    by ``isoformat`` in C instead of the dialect's %-formatting: the hot paths bind thousands.

    Answers are remembered by instant (aware datetimes are equal, and hash alike, exactly when
    they are the same instant, whatever their zone; a naive one never equals an aware one).
    """
    if value is None:
        return None
    text_ = _UTC_TEXT.get(value)
    if text_ is not None:
        return text_
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UtcDateTime column")
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    text_ = utc.replace(tzinfo=None).isoformat(" ", "microseconds")
    if len(_UTC_TEXT) >= _UTC_TEXT_MAX:
        _UTC_TEXT.clear()
    _UTC_TEXT[value] = text_
    return text_


CommitListener = Callable[[], None]

#: Statements the write connection still sends to aiosqlite's worker thread.
_THREADED_SQL = ("PRAGMA", "VACUUM")
_THREADED_CALLS = {"close", "executescript", "backup", "iterdump"}


def _threaded(fn: Any, args: tuple[Any, ...]) -> bool:
    name = getattr(fn, "__name__", "")
    if name in _THREADED_CALLS and isinstance(getattr(fn, "__self__", None), sqlite3.Connection):
        return True
    if name in ("execute", "executemany") and args and isinstance(args[0], str):
        return args[0].lstrip()[:6].upper().startswith(_THREADED_SQL)
    return False


def _is_begin(fn: Any, args: tuple[Any, ...]) -> bool:
    return getattr(fn, "__name__", "") == "execute" and bool(args) and str(args[0]).startswith("BEGIN")


class InlineWriteConnection(aiosqlite.Connection):
    """aiosqlite whose statements run on the loop's thread (see the module doc).

    Safe because SQLAlchemy awaits every call of a connection in turn, so the
    worker thread and the loop never use the sqlite3 connection at once
    (it is opened with ``check_same_thread=False``). The connection's busy
    timeout is 0, so nothing inline ever waits: a ``BEGIN`` that finds the
    file locked by another process is retried on the worker thread with the
    real busy timeout.
    """

    busy_timeout_ms = 30_000

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection itself (``weir_kit.prepared`` runs statements on it directly)."""
        return self._conn

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if _threaded(fn, args):
            return await super()._execute(fn, *args, **kwargs)
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not _is_begin(fn, args) or "locked" not in str(exc):
                raise
        return await super()._execute(self._wait_for_lock, fn, args)

    def _wait_for_lock(self, fn: Any, args: tuple[Any, ...]) -> Any:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        try:
            return fn(*args)
        finally:
            conn.execute("PRAGMA busy_timeout=0")


def _inline_connector(url: str, busy_timeout_ms: int) -> Callable[[], Any]:
    database = make_url(url).database or ":memory:"

    def connect() -> aiosqlite.Connection:
        conn = InlineWriteConnection(
            lambda: sqlite3.connect(database, check_same_thread=False, isolation_level=None), 64
        )
        conn.busy_timeout_ms = busy_timeout_ms
        conn._thread.daemon = True
        return conn

    return connect


#: ``session.info`` key of the sqlite3 connection whose transaction ``Database.transaction``
#: began itself (``weir_kit.prepared.driver`` runs statements straight on it).
SQLITE_CONNECTION_KEY = "weir.sqlite"
#: ``session.info`` key of the asyncpg connection of a ``Database.autocommit`` block, on which
#: ``weir_kit.prepared.driver`` runs statements that each commit by themselves.
ASYNCPG_CONNECTION_KEY = "weir.asyncpg"


class _Writer:
    """A write connection kept checked out, with a session bound to it."""

    def __init__(self, connection: AsyncConnection, raw: Any) -> None:
        self.connection = connection
        self.session = AsyncSession(bind=connection, expire_on_commit=False)
        self.born = time.monotonic()
        #: SQLite: the aiosqlite connection under the session (its statements run inline).
        self.inline = raw if isinstance(raw, InlineWriteConnection) else None
        #: Postgres: the asyncpg connection under the session.
        self.asyncpg = None if self.inline is not None else raw

    @classmethod
    async def open(cls, engine: AsyncEngine) -> _Writer:
        connection = await engine.connect()
        return cls(connection, (await connection.get_raw_connection()).driver_connection)

    @property
    def lost(self) -> bool:
        """Postgres: its connection is closed, which asyncpg notices when the server ends it
        (a restart, a failover, an administrator)."""
        return self.asyncpg is not None and self.asyncpg.is_closed()

    def stale(self, max_age: float) -> bool:
        """Not to be used again: invalidated, too old, or lost."""
        return self.connection.invalidated or time.monotonic() - self.born > max_age or self.lost

    async def close(self) -> None:
        try:
            if self.lost:
                # The server ended it: the pool, which does not ping, would hand it out again.
                await self.connection.invalidate()
            await self.session.close()
            await self.connection.close()
        except Exception as exc:  # a broken connection: let the pool discard it
            log.debug("closing a write connection: %s", exc)
            await self.connection.invalidate()


class Database:
    """Engines and transactions of one service."""

    def __init__(self, settings: KitSettings, service: str) -> None:
        self.service = service
        self.settings = settings
        self._commit_listeners: list[CommitListener] = []
        self._write_lock = asyncio.Lock()
        self._uncheckpointed = 0
        self._last_checkpoint = time.monotonic()
        self._checkpointing: asyncio.Task[None] | None = None
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
                # The held writer (Database._writer) keeps the first connection; a second serves
                # anything that uses the engine directly meanwhile (migrations, tests).
                max_overflow=1,
                async_creator=_inline_connector(url, settings.sqlite_busy_timeout_ms),
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
                # No pre-ping: it costs a round trip on every checkout, i.e. on every
                # request. A connection that died (Postgres restarted) fails the one
                # request using it and is invalidated by SQLAlchemy; recycling keeps
                # idle connections from being cut by proxies.
                pool_recycle=1800,
                # application_name: operators see which service a connection belongs to.
                connect_args={"server_settings": {"search_path": self.schema, "application_name": f"weir-{service}"}},
            )
            self.read_engine = self.write_engine = engine

            @event.listens_for(engine.sync_engine, "checkout")
            def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
                # The pool does not ping (a round trip per checkout), but a connection the server
                # ended while it sat in the pool is known to asyncpg as closed: the pool then
                # discards it and connects anew, and the request never sees it.
                if dbapi_conn.driver_connection.is_closed():
                    raise DisconnectionError("the server ended this pooled connection")

        # Postgres reads run without a transaction: BEGIN and ROLLBACK around a point read were
        # two of its three round trips. Nothing is lost: at READ COMMITTED (the default) each
        # statement took a snapshot of its own inside the transaction too.
        reads = self.read_engine
        if self.dialect == "postgresql":
            reads = reads.execution_options(isolation_level="AUTOCOMMIT")
        self._reads = async_sessionmaker(reads, expire_on_commit=False)
        self._cursor_reads = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._idle_writers: list[_Writer] = []
        # Postgres reads share the pool: writers kept idle take at most half of it.
        self._idle_limit = 1 if self.dialect == "sqlite" else max(1, settings.database_pool_size // 2)
        self._writer_max_age = 1800.0  # as pool_recycle

    def _tune_sqlite(self, engine: AsyncEngine, *, immediate: bool) -> None:
        busy = self.settings.sqlite_busy_timeout_ms

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the driver so BEGIN is ours.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # The write connection never waits inline (see InlineWriteConnection) nor checkpoints.
            cur.execute(f"PRAGMA busy_timeout={0 if immediate else busy}")
            if immediate:
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            if immediate:
                sqlite = conn.connection.driver_connection.sqlite
                if sqlite.in_transaction:
                    return  # begun by Database._sqlite_transaction: the session joins it
                # Straight on the sqlite3 connection (a statement through SQLAlchemy costs ~40 us);
                # a file locked by another process takes the slow path, which waits on a thread.
                try:
                    conn.connection.driver_connection.sqlite.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc):
                        raise
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` after every committed write transaction."""
        self._commit_listeners.append(listener)

    @asynccontextmanager
    async def read(self, *, cursor: bool = False) -> AsyncIterator[AsyncSession]:
        """A session for reads; nothing it does is committed. On Postgres its statements run
        outside a transaction (autocommit), each on a snapshot of its own, as at READ COMMITTED.
        ``cursor=True``: in a transaction, for a read that streams its rows through a
        server-side cursor (``session.stream``), which Postgres keeps only inside one."""
        async with (self._cursor_reads if cursor else self._reads)() as session:
            yield session

    @asynccontextmanager
    async def transaction(self, *, notify: bool = True) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block exits cleanly.

        ``notify=False``: the block writes nothing (it reads on the write connection,
        which on SQLite costs no thread hop), so commit listeners are not called.
        """
        if self.dialect == "sqlite":
            async with self._write_lock, self._writer() as session:
                yield session
            if notify:
                self._uncheckpointed += 1
                self._maybe_checkpoint()
        else:
            async with self._writer() as session:
                yield session
        if notify:
            for listener in self._commit_listeners:
                listener()

    def autocommit(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """Postgres: a write session with no transaction begun, for work whose writes are one
        statement that must commit by itself (``states.apply(optimistic=True)``): statements
        run through ``weir_kit.prepared.driver`` each commit on their own, one round trip where
        BEGIN, the statement and COMMIT would be three, and none of SQLAlchemy's per-transaction
        bookkeeping runs. A statement run through the session itself begins a transaction as
        usual, which the block's end commits (or rolls back, on an error).

        SQLite: the same as :meth:`transaction` (its writes are queued behind one writer).
        """
        if self.dialect == "sqlite":
            return self.transaction()
        return _Autocommit(self)

    @asynccontextmanager
    async def _writer(self) -> AsyncIterator[AsyncSession]:
        """One transaction on a held write connection and its session.

        Checking a connection out of SQLAlchemy's pool and building a session
        cost ~100 us per transaction, as much as the statements of a state
        proposal, so write connections stay checked out between transactions,
        each with one session bound to it. A connection that was invalidated,
        whose transaction was interrupted (cancelled), or that is older than
        the pool's recycle age is closed instead of kept.
        """
        writer = await self._take_writer()
        reusable = False
        try:
            if writer.inline is not None:
                async with self._sqlite_transaction(writer):
                    yield writer.session
            else:
                async with writer.session.begin():
                    yield writer.session
            reusable = True
        except Exception as exc:
            # Rolled back; the connection itself is fine unless it was lost.
            reusable = not connection_lost(exc)
            raise
        finally:
            await self._give_back(writer, reusable)

    async def _take_writer(self) -> _Writer:
        writer = self._idle_writers.pop() if self._idle_writers else None
        if writer is None or writer.stale(self._writer_max_age):
            if writer is not None:
                await writer.close()
            writer = await _Writer.open(self.write_engine)
        return writer

    async def _give_back(self, writer: _Writer, reusable: bool) -> None:
        """Keep ``writer`` for the next transaction, or close it (``reusable``: its block ended
        with its transaction finished, not interrupted)."""
        writer.session.info.clear()
        if reusable and not writer.stale(self._writer_max_age) and len(self._idle_writers) < self._idle_limit:
            self._idle_writers.append(writer)
        else:
            await writer.close()

    @asynccontextmanager
    async def _sqlite_transaction(self, writer: _Writer) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE and COMMIT straight on the sqlite3 connection.

        Through the session they cost ~100 us of SQLAlchemy (greenlet switches,
        session and connection state) for ~5 us of SQLite, a quarter of a unary
        state proposal. Statements sent through the session still work: the
        connection's begin hook sees the transaction already open and sends no
        BEGIN, and the session's commit or rollback then ends this transaction.
        """
        inline = writer.inline
        assert inline is not None
        session, conn = writer.session, inline.sqlite
        # Inline unless another process holds the file's write lock (then on the worker thread).
        await inline._execute(conn.execute, "BEGIN IMMEDIATE")
        session.info[SQLITE_CONNECTION_KEY] = conn
        try:
            yield
            if session.in_transaction():
                await session.commit()
            if conn.in_transaction:
                conn.commit()
        except BaseException:
            # Whatever failed (the block or the commit), the held connection goes back with no
            # transaction open, or the next BEGIN IMMEDIATE would fail on it.
            with contextlib.suppress(Exception):
                if session.in_transaction():
                    await session.rollback()
            with contextlib.suppress(Exception):
                if conn.in_transaction:
                    conn.rollback()
            raise

    def _maybe_checkpoint(self) -> None:
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        if self._uncheckpointed >= 256 or time.monotonic() - self._last_checkpoint >= 1.0:
            self._uncheckpointed = 0
            self._last_checkpoint = time.monotonic()
            self._checkpointing = asyncio.create_task(self._checkpoint(), name=f"checkpoint-{self.service}")

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database file on a reader's thread, never on the loop.

        Twice: the first pass copies the bulk beside running writers; the second,
        under the write lock, copies the few frames committed meanwhile, so the
        WAL is fully backfilled and the next writer starts it over (a writer that
        never pauses would otherwise grow it forever).
        """
        try:
            async with self.read_engine.connect() as conn:
                # On the driver connection: SQLAlchemy would wrap it in a BEGIN, and a
                # checkpoint inside a read transaction cannot move past that snapshot.
                raw = (await conn.get_raw_connection()).driver_connection
                await (await raw.execute("PRAGMA wal_checkpoint(PASSIVE)")).close()
                async with self._write_lock:
                    await (await raw.execute("PRAGMA wal_checkpoint(PASSIVE)")).close()
        except Exception as exc:  # the next burst of commits tries again
            log.debug("checkpoint of %s: %s", self.service, exc)

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
        if self._checkpointing is not None:
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        writers, self._idle_writers = self._idle_writers, []
        for writer in writers:
            await writer.close()
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()


class _Autocommit:
    """:meth:`Database.autocommit` on Postgres: a held writer whose session has no transaction
    begun. A class rather than nested generator context managers: it wraps every optimistic
    state proposal, and the three generator-based ones it replaced cost twice as much (8 us)."""

    __slots__ = ("db", "writer")

    def __init__(self, db: Database) -> None:
        self.db = db
        self.writer: _Writer | None = None

    async def __aenter__(self) -> AsyncSession:
        writer = self.writer = await self.db._take_writer()
        writer.session.info[ASYNCPG_CONNECTION_KEY] = writer.asyncpg
        return writer.session

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        writer = self.writer
        assert writer is not None
        self.writer = None
        session = writer.session
        # Finished (committed or rolled back) unless interrupted by a BaseException (a cancel).
        reusable = exc_type is None or (issubclass(exc_type, Exception) and not connection_lost(exc))
        try:
            if exc_type is None:
                if session.in_transaction():
                    await session.commit()
            elif session.in_transaction():
                with contextlib.suppress(Exception):
                    await session.rollback()
        except Exception as commit_error:
            # A failed commit was rolled back; the connection is fine unless it was lost.
            reusable = not connection_lost(commit_error)
            raise
        finally:
            await self.db._give_back(writer, reusable)
        if exc_type is None:
            for listener in self.db._commit_listeners:
                listener()


def error_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it wraps, outermost first: SQLAlchemy's ``orig``, or the error it was
    raised from; not what was being handled when it was raised, which may be unrelated."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = getattr(exc, "orig", None) or exc.__cause__


def connection_lost(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error that caused it, says the database could not be reached or
    dropped the connection: a fault of the moment that a client may retry (UNAVAILABLE), not a
    bad request or a bug. The connection it happened on must not be used again."""
    asyncpg = sys.modules.get("asyncpg")  # not imported: no asyncpg error can have happened
    for cause in error_chain(exc):
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, ConnectionError | PoolTimeout):
            return True
        if asyncpg is not None:
            errors = asyncpg.exceptions
            # Class 08 (connection exception) and 57 (operator intervention: shutdown, restart).
            if isinstance(cause, errors.PostgresConnectionError | errors.OperatorInterventionError):
                return True
            # Raised by asyncpg itself for a connection the server ended, or that it gave up on.
            if isinstance(cause, errors.ConnectionDoesNotExistError | errors.InternalClientError):
                return True
            if isinstance(cause, errors.InterfaceError) and "connection is closed" in str(cause):
                return True
    return False


#: SQLSTATEs of a value Postgres cannot store as given: longer than its column (22001), a NUL
#: or a character the encoding lacks (22021, 22P05). SQLite stores such values.
_REFUSED_VALUE_STATES = frozenset({"22001", "22021", "22P05"})


def refused_value(exc: BaseException | None) -> str | None:
    """Postgres's own words when ``exc`` says it refused a value a request carried, else None.

    Services check names and keys before they reach the database, so that both backends answer
    alike and the field is named; this is the net under those checks: such a request is the
    caller's mistake (INVALID_ARGUMENT), not a server bug (INTERNAL)."""
    for cause in error_chain(exc):
        if getattr(cause, "sqlstate", None) in _REFUSED_VALUE_STATES:
            return str(cause).strip() or type(cause).__name__
    return None
