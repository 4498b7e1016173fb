"""Tables of the deployments service (its own schema / SQLite file).

``deployment_runs`` is this service's view of the flow runs it created: the
flow runs themselves (parameters, states, history) belong to orchestration.
A row here is what a worker claims (``FOR UPDATE SKIP LOCKED`` on Postgres),
what counts against pool, queue and deployment concurrency limits, and what
the sweepers repair. Its ``state_*`` columns follow the run's state from the
``weir.flow-run.*`` events (see ``tracker.py``).

Row ``status``:

* ``NEW``: written here, not yet created in orchestration (``runs.materialize`` retries)
* ``SCHEDULED``: waiting for its time and a worker with credit
* ``CLAIMED``: proposed PENDING for a worker and sent to it; ``acked`` once the worker answered
* ``DONE``: the run reached a terminal state (or was cancelled before it started)
* ``REFUSED``: orchestration refused to create it as invalid (never retried; see ``runs.materialize``)
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

from weir_kit.db import UtcDateTime
from weir_kit.outbox import outbox_table

#: The status of a run orchestration refused to create. It stays, so that a schedule does not
#: make new runs in its place; it is withdrawn with the waiting runs and swept like DONE ones.
REFUSED = "REFUSED"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 36
NAME = 255

deployments = Table(
    "deployments",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("flow_name", String(NAME), nullable=False),
    Column("name", String(NAME), nullable=False),
    Column("version", String(NAME), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False),
    Column("entrypoint", Text, nullable=False, default=""),
    Column("working_directory", Text, nullable=False, default=""),
    Column("parameters", JSON, nullable=False),
    Column("parameter_schema", JSON, nullable=False),
    Column("job_variables", JSON, nullable=False),
    Column("work_pool_name", String(NAME), nullable=False, default=""),
    Column("work_queue_name", String(NAME), nullable=False, default=""),
    Column("paused", Boolean, nullable=False, default=False),
    Column("concurrency_limit", Integer, nullable=False, default=0),
    Column("collision_strategy", String(16), nullable=False, default="ENQUEUE"),
    Column("retries", Integer, nullable=False, default=0),
    Column("retry_delay_seconds", JSON, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
    UniqueConstraint("flow_name", "name"),
    Index("ix_deployments_created", "created", "id"),
)

schedules = Table(
    "deployment_schedules",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("deployment_id", String(ID), nullable=False),
    Column("position", Integer, nullable=False),
    #: The schedule's definition as text: an unchanged schedule keeps its cursor across re-deploys.
    Column("key", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("interval_seconds", Float, nullable=True),
    Column("cron", String(NAME), nullable=True),
    Column("rrule", Text, nullable=True),
    Column("anchor", UtcDateTime, nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("active", Boolean, nullable=False),
    #: The last occurrence that has a run: the scheduler continues strictly after it.
    Column("cursor", UtcDateTime, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Index("ix_deployment_schedules_deployment_id", "deployment_id"),
)

work_pools = Table(
    "work_pools",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(NAME), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("base_job_template", JSON, nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("concurrency_limit", Integer, nullable=False, default=0),
    Column("default_queue_name", String(NAME), nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
)

work_queues = Table(
    "work_queues",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("work_pool_name", String(NAME), nullable=False),
    Column("name", String(NAME), nullable=False),
    Column("priority", Integer, nullable=False, default=1),
    Column("concurrency_limit", Integer, nullable=False, default=0),
    Column("paused", Boolean, nullable=False, default=False),
    Column("description", Text, nullable=False, default=""),
    Column("created", UtcDateTime, nullable=False),
    UniqueConstraint("work_pool_name", "name"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("work_pool_name", String(NAME), nullable=False),
    Column("name", String(NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("work_queue_names", JSON, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("free_slots", Integer, nullable=False, default=0),
    Column("active_flow_run_ids", JSON, nullable=False),
    Column("last_heartbeat", UtcDateTime, nullable=True),
    #: Which replica holds the stream (diagnostics).
    Column("replica", String(64), nullable=False, default=""),
    Column("created", UtcDateTime, nullable=False),
    UniqueConstraint("work_pool_name", "name"),
)

deployment_runs = Table(
    "deployment_runs",
    metadata,
    Column("flow_run_id", String(ID), primary_key=True),
    Column("deployment_id", String(ID), nullable=False),
    Column("schedule_id", String(ID), nullable=True),
    Column("work_pool_name", String(NAME), nullable=False),
    Column("work_queue_name", String(NAME), nullable=False),
    Column("scheduled_time", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    #: What orchestration needs to create the run (kept until it exists there).
    Column("create_request", JSON, nullable=True),
    Column("job_variables", JSON, nullable=False),
    Column("worker_id", String(ID), nullable=True),
    Column("fencing_token", String(ID), nullable=True),
    Column("claimed_at", UtcDateTime, nullable=True),
    Column("acked", Boolean, nullable=False, default=False),
    Column("state_type", String(16), nullable=True),
    Column("state_name", String(64), nullable=True),
    Column("state_timestamp", UtcDateTime, nullable=True),
    Column("created", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
    Index("ix_deployment_runs_pool_status_time", "work_pool_name", "status", "scheduled_time"),
    Index("ix_deployment_runs_deployment_status", "deployment_id", "status"),
    Index("ix_deployment_runs_worker_id", "worker_id"),
    Index("ix_deployment_runs_schedule_id", "schedule_id", "status"),
)

outbox = outbox_table(metadata)
