"""Alembic, one history per service, applied when the service starts.

Each service keeps ``migrations/`` beside its models with an ``env.py`` that
calls :func:`run_env`. On Postgres the version table lives in the service's
schema (``search_path``); on SQLite in the service's own file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from weir_kit.db import Database


def _config(script_location: Path, connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, script_location: Path) -> None:
    """Bring the service's tables to the newest revision."""
    from alembic import command

    def _run(connection: Connection) -> None:
        command.upgrade(_config(script_location, connection), "head")

    async with db.write_engine.begin() as conn:
        if db.schema is not None:
            # Replicas starting together take turns: one migrates, the rest find it done.
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": db.schema})
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
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
