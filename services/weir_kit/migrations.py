"""Alembic, one history per service, applied when the service starts.

Each service keeps ``migrations/`` beside its models with an ``env.py`` that
calls :func:`run_env`. On Postgres the version table lives in the service's
schema (``search_path``); on SQLite in the service's own file.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from weir_kit.db import Database

#: Alembic's version table (its default name).
VERSION_TABLE = "alembic_version"


def _config(script_location: Path, connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    return cfg


_REVISION = re.compile(r"^revision(?:\s*:[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision(?:\s*:[^=]*)?=\s*(?:None|['\"]([^'\"]+)['\"])", re.MULTILINE)


def head_revision(script_location: Path) -> str:
    """The newest revision of a linear history, read from the scripts' text.

    Importing Alembic and its script modules costs about 0.3 s of a cold
    start; this answers the one question a start asks (is the database at
    head?) without them. A test checks it agrees with Alembic's own answer.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (script_location / "versions").glob("*.py"):
        text_ = path.read_text()
        found = _REVISION.search(text_)
        if found is None:
            raise RuntimeError(f"{path}: no revision line")
        revisions.add(found.group(1))
        parents.update(m.group(1) for m in _DOWN_REVISION.finditer(text_) if m.group(1))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"{script_location}: expected one head revision, found {sorted(heads)}")
    return heads.pop()


def _current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _create_at_head(connection: Connection, metadata: MetaData, head: str) -> bool:
    """An empty schema: create the tables from the models and record ``head``.

    Alembic's recipe for a new database ("create_all, then stamp head"),
    about ten times cheaper than replaying every migration. False, doing
    nothing, when any of the service's tables is already there.
    """
    existing = set(inspect(connection).get_table_names())
    if existing & set(metadata.tables):
        return False
    metadata.create_all(connection)
    connection.execute(
        text(
            f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL,"
            f" CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    connection.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:head)"), {"head": head})
    return True


async def upgrade(db: Database, script_location: Path, metadata: MetaData, *, replay: bool = False) -> None:
    """Bring the service's tables to the newest revision.

    A database already at head costs one query and no Alembic import; an
    empty one is created from the models and stamped; anything else runs
    Alembic's upgrade. ``replay``: always run the migrations (tests compare
    the two ways of building a schema).
    """
    if replay or not await _settle(db, head_revision(script_location), metadata):
        await _alembic_upgrade(db, script_location)


async def upgrade_all(targets: Sequence[tuple[Database, Path, MetaData]]) -> None:
    """:func:`upgrade` for several services' databases, as one host starts them.

    The common cases (at head, or empty) are settled side by side: each is a
    round trip or two that would otherwise wait on the one before. Alembic's
    ``context`` is process-global, so the upgrades it runs go one at a time.
    """
    settled = await asyncio.gather(
        *(_settle(db, head_revision(loc), metadata) for db, loc, metadata in targets), return_exceptions=True
    )
    # Every one has ended before an error is raised: none is left running on a database being closed.
    for outcome in settled:
        if isinstance(outcome, BaseException):
            raise outcome
    for done, (db, loc, _) in zip(settled, targets, strict=True):
        if not done:
            await _alembic_upgrade(db, loc)


@contextlib.asynccontextmanager
async def _migrating(db: Database) -> AsyncIterator[AsyncConnection]:
    """A transaction on the service's schema, holding its migration lock on Postgres."""
    async with db.write_engine.begin() as conn:
        if db.schema is not None:
            # Replicas starting together take turns: one migrates, the rest find it done.
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": db.schema})
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
        yield conn


async def _settle(db: Database, head: str, metadata: MetaData) -> bool:
    """True when the database is at ``head``, or was empty and is now created at it."""

    def _run(connection: Connection) -> bool:
        current = _current_revision(connection)
        if current == head:
            return True
        return current is None and _create_at_head(connection, metadata, head)

    async with _migrating(db) as conn:
        return await conn.run_sync(_run)


async def _alembic_upgrade(db: Database, script_location: Path) -> None:
    def _run(connection: Connection) -> None:
        from alembic import command

        command.upgrade(_config(script_location, connection), "head")

    async with _migrating(db) as conn:
        await conn.run_sync(_run)


def run_env(metadata: MetaData) -> None:
    """Body of a service's ``migrations/env.py``."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        # `alembic revision --autogenerate` from scripts/new_migration
        from sqlalchemy import create_engine

        url = context.config.get_main_option("sqlalchemy.url")
        engine = create_engine(url)
        with engine.connect() as conn:
            _configure_and_run(context, conn, metadata)
            conn.commit()
        return
    _configure_and_run(context, connection, metadata)


def _configure_and_run(context: Any, connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
