"""weir_kit.db write transactions on held connections, and weir_kit.prepared:
statements on the driver connection share the session's transaction and store
values exactly as SQLAlchemy would, on both backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import JSON, Column, Float, MetaData, String, Table, bindparam, insert, select, text
from sqlalchemy.dialects import sqlite

from tests.fixtures.backends import BACKENDS, POSTGRES_URL, require_backend, unique_schema_prefix
from weir_kit.db import Database, UtcDateTime, refused_value, sqlite_utc_text
from weir_kit.grpc_server import unhandled_status
from weir_kit.prepared import InsertMany, InsertNew, Prepared, driver
from weir_kit.settings import KitSettings

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("at", UtcDateTime, nullable=True),
    Column("doc", JSON, nullable=True),
    Column("score", Float, nullable=True),
)
INSERT = Prepared(insert(things))
INSERT_IGNORE_KEYS = Prepared(insert(things), keys=["id"])
BY_ID = Prepared(select(things).where(things.c.id == bindparam("id")))


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    require_backend(request.param)
    if request.param == "postgres":
        settings = KitSettings(home=tmp_path, database_url=POSTGRES_URL, database_schema_prefix=unique_schema_prefix())
    else:
        settings = KitSettings(home=tmp_path)
    database = Database(settings, "kit")
    await database.ensure_schema()
    async with database.write_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield database
    finally:
        await database.drop_schema()
        await database.dispose()


async def count(database: Database) -> int:
    async with database.read() as session:
        return len((await session.execute(select(things.c.id))).all())


async def test_statements_share_the_session_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await (await driver(session)).executemany(INSERT_IGNORE_KEYS, [{"id": "a"}, {"id": "b"}])
            # SQLAlchemy sees the rows in the same transaction ...
            assert len((await session.execute(select(things.c.id))).all()) == 2
            raise RuntimeError("roll back")
    # ... and they went with its rollback.
    assert await count(db) == 0
    async with db.transaction() as session:
        assert await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": "c"}) == 1
    assert await count(db) == 1


@pytest.mark.parametrize("sqlalchemy_first", [True, False])
async def test_sqlalchemy_and_prepared_statements_commit_and_roll_back_as_one(
    db: Database, sqlalchemy_first: bool
) -> None:
    # On SQLite the transaction is begun on the sqlite3 connection, outside SQLAlchemy: its
    # statements must join that transaction, whichever kind runs first, and end with it.
    async def both(session: Any, suffix: str) -> None:
        steps = [
            lambda: session.execute(insert(things).values(id=f"orm-{suffix}")),
            lambda: _prepared_insert(session, f"raw-{suffix}"),
        ]
        for step in steps if sqlalchemy_first else reversed(steps):
            await step()

    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await both(session, "lost")
            raise RuntimeError("roll back")
    async with db.transaction() as session:
        await both(session, "kept")
    async with db.transaction() as session:  # SQLAlchemy alone, on the same held connection
        await session.execute(insert(things).values(id="orm-only"))
    async with db.read() as session:
        ids = sorted((await session.execute(select(things.c.id))).scalars().all())
    assert ids == ["orm-kept", "orm-only", "raw-kept"]


async def _prepared_insert(session: Any, id_: str) -> None:
    await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": id_})


async def test_values_read_back_as_sqlalchemy_stores_them(db: Database) -> None:
    at = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC)
    row = {"id": "x", "at": at, "doc": {"tags": ["a"], "n": 1}, "score": 2.5}
    async with db.transaction() as session:
        drv = await driver(session)
        assert drv is await driver(session)  # one per session
        await drv.executemany(INSERT, [row, {"id": "y", "at": None, "doc": None, "score": None}])
        (fetched,) = await drv.fetch(BY_ID, {"id": "x"})
    assert fetched._asdict() == row
    async with db.read() as session:
        stored = (await session.execute(select(things).where(things.c.id == "x"))).one()
        empty = (await session.execute(select(things).where(things.c.id == "y"))).one()
    assert stored._asdict() == row
    assert empty.at is None and empty.doc is None and empty.score is None


AT = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "rows",
    [
        # Some columns alike in every row (bound once on Postgres), others not.
        [{"id": f"r{i}", "at": AT, "doc": [], "score": float(i)} for i in range(5)],
        # Equal in Python, stored differently: JSON keeps true apart from 1.
        [{"id": "a", "at": AT, "doc": [1], "score": 1.0}, {"id": "b", "at": AT, "doc": [True], "score": 1.0}],
        # One instant in two zones is one value; nulls alike are one value.
        [
            {"id": "a", "at": AT, "doc": None, "score": None},
            {"id": "b", "at": AT.astimezone(timezone(timedelta(hours=2))), "doc": None, "score": None},
        ],
        # Every column alike but the key, and a batch of one.
        [
            {"id": "a", "at": None, "doc": {"k": 1}, "score": 2.0},
            {"id": "b", "at": None, "doc": {"k": 1}, "score": 2.0},
        ],
        [{"id": "solo", "at": AT, "doc": {"k": [1]}, "score": 0.5}],
    ],
)
async def test_insert_many_stores_every_row_as_given(db: Database, rows: list[dict[str, Any]]) -> None:
    async with db.transaction() as session:
        await InsertMany(things).run(await driver(session), rows)
    async with db.read() as session:
        stored = {r.id: r._asdict() for r in (await session.execute(select(things))).all()}
    assert _exact(stored) == _exact({r["id"]: r for r in rows})


def _exact(rows: dict[str, Any]) -> str:
    """Rows as JSON text: unlike ==, tells true from 1 (and an instant is its timestamp)."""
    return json.dumps(rows, sort_keys=True, default=lambda value: value.timestamp())


async def test_insert_new_answers_which_keys_were_new(db: Database) -> None:
    insert_new = InsertNew(things, [c.name for c in things.c], key="id")
    first = [{"id": f"r{i}", "at": AT, "doc": [], "score": 1.0} for i in range(3)]
    async with db.transaction() as session:
        assert await insert_new.run(await driver(session), first) == {"r0", "r1", "r2"}
    again = [{**r, "score": 9.0} for r in first[1:]] + [{"id": "r3", "at": AT, "doc": [], "score": 9.0}]
    async with db.transaction() as session:
        assert await insert_new.run(await driver(session), again) == {"r3"}
    async with db.read() as session:
        scores = dict((await session.execute(select(things.c.id, things.c.score))).all())
    assert scores == {"r0": 1.0, "r1": 1.0, "r2": 1.0, "r3": 9.0}  # the old rows were left alone


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 3, 29, 3, 30, 0, 7, tzinfo=timezone(timedelta(hours=2))),
        datetime(987, 1, 2, 3, 4, 5, tzinfo=UTC),
        None,
    ],
)
def test_the_fast_sqlite_timestamp_text_is_sqlalchemys(value: datetime | None) -> None:
    dialect = sqlite.dialect()
    assert sqlite_utc_text(value) == UtcDateTime().dialect_impl(dialect).bind_processor(dialect)(value)


def test_the_remembered_timestamp_texts_follow_the_instant_not_the_zone() -> None:
    dialect = sqlite.dialect()
    sqlalchemy_text = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    utc = datetime(2026, 5, 1, 10, 0, 0, 42, tzinfo=UTC)
    shifted = utc.astimezone(timezone(timedelta(hours=-7)))
    for value in (utc, shifted, utc, shifted, utc + timedelta(microseconds=1)):  # asked again: remembered
        assert sqlite_utc_text(value) == sqlalchemy_text(value)
    with pytest.raises(ValueError, match="naive"):
        sqlite_utc_text(utc.replace(tzinfo=None))  # the same wall time, naive: still refused


def test_the_fast_sqlite_timestamp_text_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_utc_text(datetime(2026, 1, 1))  # noqa: DTZ001 (the point of the test)


async def test_only_in_a_write_transaction_on_sqlite(db: Database) -> None:
    if db.is_postgres:
        pytest.skip("Postgres has one pool for reads and writes")
    async with db.read() as session:
        with pytest.raises(TypeError):
            await driver(session)


async def test_postgres_reads_run_outside_a_transaction(db: Database) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite reads take no write lock; their BEGIN costs no round trip")
    # now() is when the transaction began: within one it stays put; outside, each statement is its own.
    async with db.read() as session:
        first = (await session.execute(text("SELECT now()"))).scalar_one()
        await session.execute(text("SELECT pg_sleep(0.02)"))
        second = (await session.execute(text("SELECT now()"))).scalar_one()
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    assert second - first >= timedelta(seconds=0.02)
    async with db.transaction(notify=False) as session:  # a transaction still is one
        first = (await session.execute(text("SELECT now()"))).scalar_one()
        await session.execute(text("SELECT pg_sleep(0.02)"))
        assert (await session.execute(text("SELECT now()"))).scalar_one() == first


async def test_a_failed_transaction_leaves_its_connection_clean(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": "lost"})
            raise RuntimeError("roll back")
    async with db.transaction() as session:  # the same held connection, a fresh transaction
        await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": "kept"})
    async with db.read() as session:
        assert (await session.execute(select(things.c.id))).scalars().all() == ["kept"]


async def test_a_commit_that_fails_does_not_poison_the_next_transaction(db: Database) -> None:
    # A deferred foreign key is checked at COMMIT: the commit itself fails.
    async with db.write_engine.begin() as conn:
        await conn.execute(text("CREATE TABLE parents (id VARCHAR(36) PRIMARY KEY)"))
        await conn.execute(
            text(
                "CREATE TABLE children (id VARCHAR(36) PRIMARY KEY, parent_id VARCHAR(36)"
                " REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO children (id, parent_id) VALUES ('c', 'missing')"))
    async with db.transaction() as session:  # the same held connection: no transaction left open on it
        await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": "after"})
    async with db.read() as session:
        assert (await session.execute(select(things.c.id))).scalars().all() == ["after"]
        assert (await session.execute(text("SELECT count(*) FROM children"))).scalar() == 0


@pytest.mark.parametrize("block", ["transaction", "autocommit"])
async def test_a_cancelled_block_does_not_poison_the_next(db: Database, block: str) -> None:
    open_block = getattr(db, block)
    entered = asyncio.Event()

    async def hang() -> None:
        async with open_block() as session:
            if block == "transaction":
                await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": "cancelled"})
            else:  # on Postgres a driver statement would commit by itself: begin one to interrupt
                await session.execute(insert(things).values(id="cancelled"))
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(hang())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for i in range(3):
        async with open_block() as session:
            await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": f"after-{i}"})
    async with db.read() as session:
        ids = sorted((await session.execute(select(things.c.id))).scalars().all())
    assert ids == ["after-0", "after-1", "after-2"]


async def test_autocommit_statements_on_the_driver_commit_each_on_their_own(db: Database) -> None:
    # Postgres: each prepared statement commits by itself. SQLite: autocommit() is
    # transaction() (its writes queue behind one writer), so the block is one transaction.
    committed: list[int] = []
    db.add_commit_listener(lambda: committed.append(1))
    with pytest.raises(RuntimeError):
        async with db.autocommit() as session:
            await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": "own"})
            if db.is_postgres:
                assert await count(db) == 1  # committed already: another connection sees it
            raise RuntimeError("the block fails")
    assert await count(db) == (1 if db.is_postgres else 0)
    assert committed == []  # a block that failed notifies nobody
    async with db.autocommit() as session:
        await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": "next"})
    assert await count(db) == (2 if db.is_postgres else 1)
    assert committed == [1]


async def test_autocommit_statements_through_the_session_end_with_the_block(db: Database) -> None:
    # A statement SQLAlchemy runs begins a transaction as usual: the block's end commits it,
    # or rolls it back on an error, and the held connection is clean for the next block.
    with pytest.raises(RuntimeError):
        async with db.autocommit() as session:
            await session.execute(insert(things).values(id="rolled-back"))
            raise RuntimeError("roll back")
    assert await count(db) == 0
    async with db.autocommit() as session:
        await session.execute(insert(things).values(id="kept"))
        await (await driver(session)).execute(INSERT_IGNORE_KEYS, {"id": "kept-too"})
    async with db.read() as session:
        assert sorted((await session.execute(select(things.c.id))).scalars().all()) == ["kept", "kept-too"]


async def test_a_value_postgres_cannot_store_is_the_callers_mistake_not_a_bug(db: Database) -> None:
    """Too long for its column, or a NUL: Postgres refuses the value (SQLSTATE 22001, 22021),
    which the interceptor answers INVALID_ARGUMENT, not INTERNAL; SQLite stores it, which is
    why every service checks names before they reach the database."""
    too_long, with_nul = "x" * 37, "a\x00b"
    if not db.is_postgres:
        async with db.transaction() as session:
            await session.execute(insert(things).values(id=too_long))
            await session.execute(insert(things).values(id=with_nul))
        assert await count(db) == 2
        return
    for value, state in ((too_long, "22001"), (with_nul, "22021")):
        for prepared in (False, True):
            with pytest.raises(Exception) as refused:
                async with db.transaction() as session:
                    if prepared:
                        await (await driver(session)).execute(
                            INSERT, {"id": value, "at": None, "doc": None, "score": None}
                        )
                    else:
                        await session.execute(insert(things).values(id=value))
            message = refused_value(refused.value)
            assert message, (state, repr(refused.value))
            code, details = unhandled_status("/weir.v1.Test/Insert", refused.value)
            assert code is grpc.StatusCode.INVALID_ARGUMENT and message in details
    with pytest.raises(Exception) as bug:
        async with db.transaction() as session:
            await session.execute(text("SELECT * FROM no_such_table_here"))
    assert refused_value(bug.value) is None
    assert unhandled_status("/weir.v1.Test/Select", bug.value)[0] is grpc.StatusCode.INTERNAL
    assert await count(db) == 0
