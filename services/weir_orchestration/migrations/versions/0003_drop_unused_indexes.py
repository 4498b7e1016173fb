"""drop indexes no query uses

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:30:00

The outbox's index on ``created`` served no query: the relay reads and deletes by
``seq``. Every event paid one insert into it and one delete from it.

``ix_flow_runs_flow_id`` repeated the leading column of the unique index on
``(flow_id, idempotency_key)``, which serves the same lookups; every flow run
written (each state change rewrites its index entries) paid for both.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outbox_created", table_name="outbox")
    op.drop_index("ix_flow_runs_flow_id", table_name="flow_runs")


def downgrade() -> None:
    op.create_index("ix_outbox_created", "outbox", ["created"])
    op.create_index("ix_flow_runs_flow_id", "flow_runs", ["flow_id"])
