"""Starting a service migrates its database: at head it is left alone, an empty
one is created from the models and stamped, an older one runs Alembic.

The fast paths are only correct if the models and the migration history
describe the same schema, so each service's schema is built both ways, on
SQLite and on Postgres, and compared object by object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from tests.fixtures.backends import BACKENDS, POSTGRES_URL, drop_schemas, require_backend, unique_schema_prefix
from weir_kit.db import Database
from weir_kit.migrations import VERSION_TABLE, _config, head_revision, upgrade, upgrade_all
from weir_kit.runtime import ServiceDefinition
from weir_kit.settings import KitSettings
from weir_server.registry import SERVICES, load


def _condition(index: Any) -> str | None:
    """A partial index's WHERE as the database reports it (None for a full index)."""
    options = index.get("dialect_options", {})
    where = options.get("postgresql_where", options.get("sqlite_where"))
    return None if where is None else str(where)


def _snapshot(connection: Connection) -> dict[str, Any]:
    """Every table's columns, keys and indexes, as the database reports them."""
    insp = inspect(connection)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")) if c.get("default") else None)
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in insp.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]), _condition(i)) for i in insp.get_indexes(table)
            ),
            "uniques": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
        }
    return out


class Databases:
    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.prefix = unique_schema_prefix()
        self.opened: list[Database] = []

    def new(self, name: str, service: str) -> Database:
        if self.backend == "postgres":
            settings = KitSettings(
                home=self.tmp_path, database_url=POSTGRES_URL, database_schema_prefix=f"{self.prefix}{name}_"
            )
        else:
            settings = KitSettings(home=self.tmp_path / name)
        db = Database(settings, service)
        self.opened.append(db)
        return db


@pytest.fixture(params=BACKENDS)
async def databases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Databases]:
    require_backend(request.param)
    dbs = Databases(request.param, tmp_path)
    try:
        yield dbs
    finally:
        for db in dbs.opened:
            await db.dispose()
        if request.param == "postgres":
            await drop_schemas(dbs.prefix)


async def _run(db: Database, fn: Any) -> Any:
    async with db.write_engine.connect() as conn:
        return await conn.run_sync(fn)


@pytest.mark.parametrize("service", list(SERVICES))
def test_the_head_read_from_the_scripts_is_alembics(service: str) -> None:
    definition = load(service)
    alembic_head = ScriptDirectory.from_config(_config(definition.migrations)).get_current_head()
    assert head_revision(definition.migrations) == alembic_head


@pytest.mark.parametrize("service", list(SERVICES))
async def test_a_new_database_from_the_models_equals_the_migrated_one(databases: Databases, service: str) -> None:
    definition: ServiceDefinition = load(service)
    replayed, created = databases.new("replayed", service), databases.new("created", service)
    await upgrade(replayed, definition.migrations, definition.metadata, replay=True)
    await upgrade(created, definition.migrations, definition.metadata)

    assert await _run(created, _snapshot) == await _run(replayed, _snapshot)
    head = head_revision(definition.migrations)
    for db in (created, replayed):
        version = await _run(db, lambda c: c.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar())
        assert version == head
    # And Alembic finds nothing to add to the migrated schema: the models are its head.
    diff = await _run(replayed, lambda c: compare_metadata(MigrationContext.configure(c), definition.metadata))
    assert diff == []


async def test_a_database_at_head_is_left_as_it_is(databases: Databases) -> None:
    definition = load("orchestration")
    db = databases.new("main", "orchestration")
    await upgrade(db, definition.migrations, definition.metadata)
    async with db.write_engine.begin() as conn:
        await conn.execute(text("CREATE TABLE marker (id INTEGER PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO marker (id) VALUES (7)"))

    await upgrade(db, definition.migrations, definition.metadata)

    async with db.write_engine.connect() as conn:
        assert (await conn.execute(text("SELECT id FROM marker"))).scalar() == 7


async def test_an_older_database_is_brought_to_head_by_alembic(databases: Databases) -> None:
    definition = load("deployments")
    db = databases.new("old", "deployments")
    head = head_revision(definition.migrations)
    first = ScriptDirectory.from_config(_config(definition.migrations)).get_base()
    assert first != head, "the deployments history needs two revisions for this test"

    async with db.write_engine.begin() as conn:
        if db.schema is not None:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
        await conn.run_sync(lambda c: command.upgrade(_config(definition.migrations, c), first))
        await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    tables_before = set(await _run(db, lambda c: inspect(c).get_table_names()))

    await upgrade(db, definition.migrations, definition.metadata)

    tables_after = set(await _run(db, lambda c: inspect(c).get_table_names()))
    assert tables_after - tables_before, "the second revision's tables were not created"
    assert set(definition.metadata.tables) <= tables_after
    assert await _run(db, lambda c: c.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()) == head


async def test_upgrade_all_settles_several_databases_at_once(databases: Databases) -> None:
    """What a host does at start: an empty, an at-head and an older database in one call."""
    orchestration, deployments = load("orchestration"), load("deployments")
    empty = databases.new("empty", "orchestration")
    at_head = databases.new("head", "orchestration")
    older = databases.new("older", "deployments")
    await upgrade(at_head, orchestration.migrations, orchestration.metadata)
    first = ScriptDirectory.from_config(_config(deployments.migrations)).get_base()
    async with older.write_engine.begin() as conn:
        if older.schema is not None:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{older.schema}"'))
        await conn.run_sync(lambda c: command.upgrade(_config(deployments.migrations, c), first))

    await upgrade_all(
        [
            (empty, orchestration.migrations, orchestration.metadata),
            (at_head, orchestration.migrations, orchestration.metadata),
            (older, deployments.migrations, deployments.metadata),
        ]
    )

    for db, definition in ((empty, orchestration), (at_head, orchestration), (older, deployments)):
        version = await _run(db, lambda c: c.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar())
        assert version == head_revision(definition.migrations)
        assert set(definition.metadata.tables) <= set(await _run(db, lambda c: inspect(c).get_table_names()))


async def test_upgrade_all_raises_a_database_error_after_the_others_are_settled(tmp_path: Path) -> None:
    """One database away: its own error comes out (not a wrapper), once the others have ended."""
    orchestration = load("orchestration")
    good = Database(KitSettings(home=tmp_path / "good"), "orchestration")
    away = Database(KitSettings(home=tmp_path, database_url="postgresql+asyncpg://postgres@127.0.0.1:9/x"), "blocks")
    blocks = load("blocks")
    try:
        with pytest.raises(OSError):
            await upgrade_all(
                [(away, blocks.migrations, blocks.metadata), (good, orchestration.migrations, orchestration.metadata)]
            )
        version = await _run(good, lambda c: c.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar())
        assert version == head_revision(orchestration.migrations)
    finally:
        await good.dispose()
        await away.dispose()
