"""cache key lookups read the newest rows of a key first

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:30:00

The cache lookup (``cache_keys.cache_lookup``) ranks a key's COMPLETED and RUNNING task runs by
state time and keeps the newest few; with the time in the index, the rows come in that order
and need no sort, however many cached copies a popular key has gathered.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_runs_cache_key")
        batch_op.create_index("ix_task_runs_cache_key", ["cache_key", "state_type", "state_timestamp"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_runs_cache_key")
        batch_op.create_index("ix_task_runs_cache_key", ["cache_key", "state_type"], unique=False)
