"""Tables of the orchestration service (one MetaData; the Postgres schema
comes from ``search_path``, so no table names a schema).

The current state of a run is copied onto the run row (``state_*``) so
filters and lists never join the history table; ``run_states`` keeps every
state of both flow runs and task runs, keyed by run id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Float, Index, Integer, MetaData, String, Table, Text, UniqueConstraint, text

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


def _where(condition: str) -> dict[str, Any]:
    """A partial index's condition, on both backends."""
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


def _state_columns() -> list[Column]:  # type: ignore[type-arg]
    return [
        Column("state_id", String(ID), nullable=True),
        Column("state_type", String(16), nullable=True),
        Column("state_name", String(64), nullable=True),
        Column("state_timestamp", UtcDateTime, nullable=True),
        Column("state_message", Text, nullable=True),
        Column("state_details", JSON, nullable=True),
        Column("state_data", JSON, nullable=True),
    ]


flows = Table(
    "flows",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("tags", JSON, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
    Index("ix_flows_created", "created", "id"),
)

flow_runs = Table(
    "flow_runs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("flow_id", String(ID), nullable=False),
    Column("name", String(255), nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("context", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("parent_task_run_id", String(ID), nullable=True),
    Column("deployment_id", String(ID), nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("retries", Integer, nullable=False, default=0),
    Column("retry_delay_seconds", JSON, nullable=False),
    Column("run_count", Integer, nullable=False, default=0),
    Column("expected_start_time", UtcDateTime, nullable=True),
    Column("start_time", UtcDateTime, nullable=True),
    Column("end_time", UtcDateTime, nullable=True),
    Column("total_run_time", Float, nullable=False, default=0.0),
    Column("heartbeat", UtcDateTime, nullable=True),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
    *_state_columns(),
    UniqueConstraint("flow_id", "idempotency_key"),  # also the index of flow_id lookups
    Index("ix_flow_runs_created", "created", "id"),
    Index("ix_flow_runs_state_type", "state_type", "state_timestamp"),
    Index("ix_flow_runs_expected_start_time", "expected_start_time"),
    Index("ix_flow_runs_parent_task_run_id", "parent_task_run_id"),
)

task_runs = Table(
    "task_runs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("flow_run_id", String(ID), nullable=False),
    Column("name", String(255), nullable=False),
    Column("task_key", String(255), nullable=False),
    Column("dynamic_key", String(255), nullable=False),
    Column("cache_key", String(255), nullable=True),
    Column("cache_expiration", UtcDateTime, nullable=True),
    Column("tags", JSON, nullable=False),
    Column("task_inputs", JSON, nullable=False),
    Column("retries", Integer, nullable=False, default=0),
    Column("retry_delay_seconds", JSON, nullable=False),
    Column("run_count", Integer, nullable=False, default=0),
    Column("expected_start_time", UtcDateTime, nullable=True),
    Column("start_time", UtcDateTime, nullable=True),
    Column("end_time", UtcDateTime, nullable=True),
    Column("total_run_time", Float, nullable=False, default=0.0),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
    *_state_columns(),
    UniqueConstraint("flow_run_id", "task_key", "dynamic_key"),
    Index("ix_task_runs_created", "created", "id"),
    # Partial: most task runs have no cache key, and a lookup always names one.
    Index("ix_task_runs_cache_key", "cache_key", "state_type", "state_timestamp", **_where("cache_key IS NOT NULL")),
)

run_states = Table(
    "run_states",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("run_id", String(ID), nullable=False),
    Column("run_kind", String(8), nullable=False),
    Column("type", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    Column("timestamp", UtcDateTime, nullable=False),
    Column("message", Text, nullable=True),
    Column("details", JSON, nullable=False),
    Column("data", JSON, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Index("ix_run_states_run_id_timestamp", "run_id", "timestamp"),
    # Partial: most states carry no idempotency key, and a lookup always names one.
    Index("ix_run_states_run_id_idempotency_key", "run_id", "idempotency_key", **_where("idempotency_key IS NOT NULL")),
)

logs = Table(
    "logs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("flow_run_id", String(ID), nullable=True),
    Column("task_run_id", String(ID), nullable=True),
    Column("name", String(255), nullable=False),
    Column("level", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("timestamp", UtcDateTime, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Index("ix_logs_flow_run_id_timestamp", "flow_run_id", "timestamp"),
    Index("ix_logs_task_run_id", "task_run_id"),
)

outbox = outbox_table(metadata)
