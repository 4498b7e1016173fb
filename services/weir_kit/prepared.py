"""Prepared statements for the hot paths, run on the driver connection of a
write session.

SQLAlchemy spends 30 us (SQLite) to 80 us (asyncpg) of Python on every
statement before the driver sees it: the compiled-cache lookup, an execution
context, a greenlet hop, the adapter's cursor, a result object, and per bound
value the parameter machinery. A state proposal runs four or five statements
and a SyncRuns batch binds tens of thousands of values, so that overhead was
most of their cost. A :class:`Prepared` statement is written with SQLAlchemy
Core like any other, compiled once per dialect, and run by :class:`Driver`
straight on the connection that already holds the session's transaction, with
the columns' own bind and result processors, so rows are stored and read back
exactly as SQLAlchemy would store and read them.

Use it only inside ``Database.transaction()`` (or ``Database.autocommit()``), on
statements of the hot paths; everything else stays plain SQLAlchemy.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import JSON, String, Table, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable
from sqlalchemy.types import TypeEngine

from weir_kit.db import (
    ASYNCPG_CONNECTION_KEY,
    SQLITE_CONNECTION_KEY,
    InlineWriteConnection,
    UtcDateTime,
    sqlite_utc_text,
)

Processor = Callable[[Any], Any] | None

_DRIVER_KEY = "weir.driver"


def bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor:
    """The type's own bind processor; for JSON, with empty values answered from memory
    (a task run row carries five JSON columns, mostly ``[]``, ``{}`` or null), and for UTC
    timestamps on SQLite, :func:`sqlite_utc_text`."""
    if isinstance(type_, UtcDateTime) and dialect.name == "sqlite":
        return sqlite_utc_text
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    if process is None or not isinstance(type_, JSON):
        return process
    null, empty_list, empty_dict = process(None), process([]), process({})

    def json_value(value: Any) -> Any:
        if value is None:
            return null
        if not value and type(value) is list:
            return empty_list
        if not value and type(value) is dict:
            return empty_dict
        return process(value)

    return json_value


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    binds: tuple[Processor, ...]
    #: None until the result column types are known (Postgres: from the server, at first use).
    results: tuple[Processor, ...] | None
    row: Any  # a namedtuple class named after the result columns

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [p(params[n]) if p else params[n] for n, p in zip(self.names, self.binds, strict=True)]

    def rows(self, raw: Iterable[Sequence[Any]]) -> list[Any]:
        make, procs = self.row._make, self.results
        assert procs is not None
        if not any(procs):
            return [make(r) for r in raw]
        return [make([p(v) if p else v for p, v in zip(procs, r, strict=True)]) for r in raw]


class Prepared:
    """A Core statement compiled once per dialect (bound values by name).

    ``keys``: for an INSERT or UPDATE without explicit values, the columns it
    sets (all of them otherwise).
    """

    def __init__(self, statement: Executable, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=self.keys)
        names = tuple(compiled.positiontup or ())
        binds = tuple(bind_processor(compiled.binds[n].type, dialect) for n in names)
        columns = self._columns()
        row = namedtuple("Row", [c.key for c in columns], rename=True) if columns else tuple  # type: ignore[misc]
        # Postgres's result processors depend on the type the server reports (numeric OIDs).
        results = None if dialect.name == "postgresql" else self._results(dialect, [None] * len(columns))
        return _Compiled(compiled.string, names, binds, results, row)

    def _columns(self) -> list[Any]:
        return list(getattr(self.statement, "exported_columns", ()))

    def _results(self, dialect: Dialect, coltypes: Sequence[Any]) -> tuple[Processor, ...]:
        columns = self._columns()
        return tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, t) for c, t in zip(columns, coltypes, strict=True)
        )

    def described(self, dialect: Dialect, coltypes: Sequence[Any]) -> _Compiled:
        """The compiled form, now that the server has named the result column types."""
        c = replace(self.compiled(dialect), results=self._results(dialect, coltypes))
        self._compiled[dialect.name] = c
        return c


class Driver:
    """The driver connection under a write session: SQLite's (on the loop's thread) or asyncpg's."""

    def __init__(self, dialect: Dialect, connection: Any) -> None:
        self.dialect = dialect
        self.connection = connection
        self.is_postgres = dialect.name == "postgresql"

    async def fetch(self, statement: Prepared, params: Mapping[str, Any]) -> list[Any]:
        c = statement.compiled(self.dialect)
        if self.is_postgres:
            if c.results is None:
                prepared = await self.connection.prepare(c.sql)
                c = statement.described(self.dialect, [a.type.oid for a in prepared.get_attributes()])
            return c.rows(await self.connection.fetch(c.sql, *c.args(params)))
        return c.rows(self.connection.execute(c.sql, c.args(params)).fetchall())

    async def execute(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        """Run one statement; how many rows it changed."""
        c = statement.compiled(self.dialect)
        if self.is_postgres:
            status = await self.connection.execute(c.sql, *c.args(params))
            return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0
        return int(self.connection.execute(c.sql, c.args(params)).rowcount)

    async def executemany(self, statement: Prepared, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        c = statement.compiled(self.dialect)
        args = [c.args(r) for r in rows]
        if self.is_postgres:
            await self.connection.executemany(c.sql, args)
        else:
            self.connection.executemany(c.sql, args)


class Keyed:
    """A statement filtered on ``column`` being one of a list of keys, prepared once for any
    length of list: ``column = ANY(:keys)`` with an array on Postgres, ``column IN (SELECT value
    FROM json_each(:keys))`` with a JSON list on SQLite. (``IN`` with one bound value per key
    compiles a new statement for every length, ~10 us per key on a batch of hundreds.)

    ``build`` makes the statement from the filter: ``Keyed(lambda cond: delete(t).where(cond), t.c.seq)``.
    """

    def __init__(self, build: Callable[[Any], Executable], column: Any) -> None:
        self._postgres = Prepared(build(column == any_(bindparam("keys", type_=ARRAY(column.type)))))
        listed = select(literal_column("value", column.type)).select_from(
            func.json_each(bindparam("keys", type_=String))
        )
        self._sqlite = Prepared(build(column.in_(listed.scalar_subquery())))

    def _bound(self, drv: Driver, keys: Sequence[Any], params: Mapping[str, Any]) -> tuple[Prepared, dict[str, Any]]:
        if drv.is_postgres:
            return self._postgres, {**params, "keys": list(keys)}
        return self._sqlite, {**params, "keys": json.dumps(list(keys))}

    async def fetch(self, drv: Driver, keys: Sequence[Any], **params: Any) -> list[Any]:
        return await drv.fetch(*self._bound(drv, keys, params))

    async def execute(self, drv: Driver, keys: Sequence[Any], **params: Any) -> int:
        return await drv.execute(*self._bound(drv, keys, params))


class InsertMany:
    """Many rows of ``table`` in one statement.

    Postgres takes the batch as one array per column, ``INSERT ... SELECT ... FROM
    unnest(...)``: one round trip and one plan for any batch size, where asyncpg's
    ``executemany`` encodes and sends a bind and an execute per row (~2x the Python
    for a SyncRuns batch of states). A column that holds one value in every row of
    the batch (the flow run, the creation time, the first state's type, the many
    empty JSON lists of a SyncRuns batch) is bound once, as a scalar, instead of as
    an array of equal values that asyncpg encodes and the server unnests value by
    value: a statement per pattern of such columns, which a service meets only a
    few of. SQLite runs ``executemany`` on the loop's thread.
    """

    def __init__(self, table: Table, keys: Sequence[str] | None = None) -> None:
        self.table = table
        self.keys = list(keys) if keys is not None else [c.name for c in table.c]
        self._sqlite = Prepared(self._sqlite_statement(), keys=self.keys)
        self._binds: tuple[Processor, ...] | None = None
        self._postgres: dict[tuple[bool, ...], str] = {}  # SQL by which columns are bound once

    def _sqlite_statement(self) -> Executable:
        return sqlite.insert(self.table)

    def _postgres_suffix(self, prep: Any) -> str:
        """What follows the SELECT on Postgres."""
        return ""

    def _postgres_sql(self, dialect: Dialect, scalar: tuple[bool, ...]) -> str:
        sql = self._postgres.get(scalar)
        if sql is None:
            columns = [self.table.c[k] for k in self.keys]
            prep = dialect.identifier_preparer
            picks, arrays, names = [], [], []
            for i, (c, once) in enumerate(zip(columns, scalar, strict=True), 1):
                cast = c.type.compile(dialect=dialect)
                if once:
                    picks.append(f"${i}::{cast}")
                else:
                    picks.append(f"u.c{i}")
                    arrays.append(f"${i}::{cast}[]")
                    names.append(f"c{i}")
            sql = self._postgres[scalar] = (
                f"INSERT INTO {prep.format_table(self.table)} ({', '.join(prep.format_column(c) for c in columns)}) "
                f"SELECT {', '.join(picks)} FROM unnest({', '.join(arrays)}) AS u({', '.join(names)})"
                f"{self._postgres_suffix(prep)}"
            )
        return sql

    def _postgres_call(self, drv: Driver, rows: Sequence[Mapping[str, Any]]) -> tuple[str, list[Any]]:
        """The statement for ``rows`` and its arguments: a value or an array per column."""
        if self._binds is None:
            self._binds = tuple(bind_processor(self.table.c[k].type, drv.dialect) for k in self.keys)
        size, args, scalar = len(rows), [], []
        for k, p in zip(self.keys, self._binds, strict=True):
            values = [p(r[k]) for r in rows] if p else [r[k] for r in rows]
            # Compared as bound (JSON as its text), so equal means stored the same. The last
            # value first: most columns that vary differ there, and count() reads them all.
            first = values[0]
            once = size > 1 and values[-1] == first and values.count(first) == size
            args.append(first if once else values)
            scalar.append(once)
        if all(scalar):  # unnest needs an array: rows that are all alike keep theirs
            scalar = [False] * len(scalar)
            args = [[v] * size for v in args]
        return self._postgres_sql(drv.dialect, tuple(scalar)), args

    async def run(self, drv: Driver, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        if drv.is_postgres:
            sql, args = self._postgres_call(drv, rows)
            await drv.connection.execute(sql, *args)
            return
        c = self._sqlite.compiled(drv.dialect)
        drv.connection.executemany(c.sql, [c.args(r) for r in rows])


class InsertIgnore(InsertMany):
    """:class:`InsertMany` that skips rows whose key is taken (``ON CONFLICT DO NOTHING``)."""

    def _sqlite_statement(self) -> Executable:
        return sqlite.insert(self.table).on_conflict_do_nothing()

    def _postgres_suffix(self, prep: Any) -> str:
        return " ON CONFLICT DO NOTHING"


class InsertNew(InsertIgnore):
    """Insert-or-ignore of many rows that says which were new, by their ``key`` column.

    SQLite runs one ``INSERT OR IGNORE`` per row (microseconds each on the
    loop's thread) and reads each one's row count. Postgres adds ``RETURNING
    key`` to :class:`InsertIgnore`'s statement, exact even while another
    transaction inserts the same keys.
    """

    def __init__(self, table: Table, keys: Sequence[str], key: str) -> None:
        self.key = key
        super().__init__(table, keys)

    def _postgres_suffix(self, prep: Any) -> str:
        return f"{super()._postgres_suffix(prep)} RETURNING {prep.format_column(self.table.c[self.key])}"

    async def run(self, drv: Driver, rows: Sequence[Mapping[str, Any]]) -> set[Any]:  # type: ignore[override]
        """Insert ``rows``; the keys of those that were new."""
        if not rows:
            return set()
        if drv.is_postgres:
            sql, args = self._postgres_call(drv, rows)
            return {r[0] for r in await drv.connection.fetch(sql, *args)}
        c = self._sqlite.compiled(drv.dialect)
        run = drv.connection.execute
        return {r[self.key] for r in rows if run(c.sql, c.args(r)).rowcount > 0}


async def driver(session: AsyncSession) -> Driver:
    """The :class:`Driver` of a write session's connection, its transaction begun, or, in a
    ``Database.autocommit`` block, with none: there each statement commits by itself."""
    found = session.info.get(_DRIVER_KEY)
    if found is not None:
        return found  # type: ignore[no-any-return]
    dialect = session.bind.dialect  # type: ignore[union-attr]
    direct = session.info.get(SQLITE_CONNECTION_KEY) or session.info.get(ASYNCPG_CONNECTION_KEY)
    if direct is not None:  # Database.transaction began it (SQLite) or none is wanted (autocommit)
        found = session.info[_DRIVER_KEY] = Driver(dialect, direct)
        return found
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    if dialect.name == "postgresql":
        adapted = raw.dbapi_connection
        # SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement it runs
        # itself; statements sent straight to asyncpg must not run before it (autocommit).
        if adapted._transaction is None:  # type: ignore[union-attr]
            await adapted._start_transaction()  # type: ignore[union-attr]
        connection = raw.driver_connection
    else:
        # The write connection began IMMEDIATE when the session took it (Database._tune_sqlite).
        if not isinstance(raw.driver_connection, InlineWriteConnection):
            raise TypeError("prepared statements run only in a write transaction (Database.transaction)")
        connection = raw.driver_connection.sqlite
    found = session.info[_DRIVER_KEY] = Driver(dialect, connection)
    return found
