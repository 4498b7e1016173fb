"""drop the outbox index no query uses

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:30:00

The outbox's index on ``created`` served no query: the relay reads and deletes by
``seq``. Every event paid one insert into it and one delete from it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outbox_created", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_created", "outbox", ["created"])
