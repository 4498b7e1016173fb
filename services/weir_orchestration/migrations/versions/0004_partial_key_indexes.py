"""the cache-key and idempotency-key indexes hold only rows that have a key

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:00:00

Most task runs have no cache key and most states no idempotency key, yet each
such row had an entry (NULL) in these indexes: a SyncRuns batch wrote two index
entries per task run that no lookup could use, and every state change of a
task run rewrote one of them (the update is not HOT). Every lookup names a key,
which implies it is not NULL, so Postgres and SQLite both use the partial index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_task_runs_cache_key", "task_runs", ["cache_key", "state_type", "state_timestamp"], "cache_key"),
    ("ix_run_states_run_id_idempotency_key", "run_states", ["run_id", "idempotency_key"], "idempotency_key"),
)


def upgrade() -> None:
    for name, table, columns, key in _INDEXES:
        where = sa.text(f"{key} IS NOT NULL")
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, table, columns, _ in _INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
