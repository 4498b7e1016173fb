"""SQL helpers shared by this service's data-access modules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from weir_kit.db import Database


def insert_ignore(db: Database, table: Table) -> Any:
    """INSERT that skips rows hitting a unique key (ON CONFLICT DO NOTHING / INSERT OR IGNORE)."""
    dialect = postgresql if db.is_postgres else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def locked(db: Database, query: Any, *, of: Any = None) -> Any:
    """``FOR UPDATE SKIP LOCKED`` on Postgres; SQLite's one writer already serialises claims."""
    if db.is_postgres:
        return query.with_for_update(skip_locked=True, of=of)
    return query
