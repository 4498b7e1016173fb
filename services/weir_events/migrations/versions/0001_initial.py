"""events, event_resources, outbox

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from weir_kit.db import UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("occurred", UtcDateTime(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=False),
        sa.Column("resource", sa.JSON(), nullable=False),
        sa.Column("related", sa.JSON(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("follows", sa.String(36), nullable=True),
        sa.Column("received", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_occurred_id", "events", ["occurred", "id"])
    op.create_index("ix_events_event", "events", ["event"], postgresql_ops={"event": "text_pattern_ops"})
    op.create_index("ix_events_resource_id", "events", ["resource_id"])

    op.create_table(
        "event_resources",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("occurred", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "resource_id", "role", name="pk_event_resources"),
    )
    op.create_index("ix_event_resources_resource_id_occurred", "event_resources", ["resource_id", "occurred"])
    op.create_index("ix_event_resources_occurred", "event_resources", ["occurred"])

    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("id", name="uq_outbox_id"),
    )
    op.create_index("ix_outbox_created", "outbox", ["created"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("event_resources")
    op.drop_table("events")
