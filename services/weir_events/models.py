"""Tables of the events service.

``events`` holds one row per event (idempotent on ``id``); ``event_resources``
holds one row per resource an event is about (role ``""``) or related to
(its ``weir.resource.role``), so "every event touching resource X" is one
indexed lookup. The Postgres schema comes from ``search_path``.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, MetaData, String, Table, Text

from weir_kit.db import UtcDateTime
from weir_kit.outbox import outbox_table

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 36  # a UUID in its text form

#: Role stored in ``event_resources`` for the event's own resource.
PRIMARY_ROLE = ""

events = Table(
    "events",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("occurred", UtcDateTime, nullable=False),
    Column("event", Text, nullable=False),
    Column("resource_id", Text, nullable=False),
    Column("resource", JSON, nullable=False),
    Column("related", JSON, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("follows", String(ID), nullable=True),
    Column("received", UtcDateTime, nullable=False),
    Index("ix_events_occurred_id", "occurred", "id"),
    Index("ix_events_event", "event", postgresql_ops={"event": "text_pattern_ops"}),
    Index("ix_events_resource_id", "resource_id"),
)

event_resources = Table(
    "event_resources",
    metadata,
    Column("event_id", String(ID), primary_key=True),
    Column("resource_id", Text, primary_key=True),
    Column("role", Text, primary_key=True),
    Column("occurred", UtcDateTime, nullable=False),
    Index("ix_event_resources_resource_id_occurred", "resource_id", "occurred"),
    Index("ix_event_resources_occurred", "occurred"),
)

outbox = outbox_table(metadata)
