"""Rows <-> protobuf messages of the deployments service, in one place."""

from __future__ import annotations

from typing import Any

from weir._proto import dict_to_struct, struct_to_dict, timestamp_to_datetime, to_timestamp
from weir.errors import InvalidArgument
from weir.v1 import deployments_pb2 as pb
from weir_kit.values import parse_id, short_text

__all__ = [
    "check_name",
    "deployment_to_pb",
    "dict_to_struct",
    "parse_id",
    "pool_to_pb",
    "queue_to_pb",
    "schedule_row_to_pb",
    "struct_to_dict",
    "timestamp_to_datetime",
    "worker_to_pb",
]

COLLISION_NAMES = {pb.ENQUEUE: "ENQUEUE", pb.CANCEL_NEW: "CANCEL_NEW", pb.COLLISION_STRATEGY_UNSPECIFIED: "ENQUEUE"}
COLLISION_VALUES = {"ENQUEUE": pb.ENQUEUE, "CANCEL_NEW": pb.CANCEL_NEW}


def check_name(value: str, field: str, *, required: bool = True) -> str:
    """A trimmed name of at most 255 characters, with no NUL and no '/' (it separates flow and
    deployment)."""
    value = short_text(value.strip(), field)
    if not value:
        if required:
            raise InvalidArgument(f"{field} is required", field=field)
        return ""
    if "/" in value:
        raise InvalidArgument(f"{field} may not contain '/': {value!r}", field=field)
    return value


def schedule_row_to_pb(row: Any) -> pb.Schedule:
    msg = pb.Schedule(id=row.id, timezone=row.timezone, active=row.active)
    if row.kind == "interval":
        msg.interval_seconds = row.interval_seconds
    elif row.kind == "cron":
        msg.cron = row.cron
    else:
        msg.rrule = row.rrule
    if row.anchor is not None:
        msg.anchor.CopyFrom(to_timestamp(row.anchor))
    return msg


def deployment_to_pb(row: Any, schedule_rows: list[Any]) -> pb.Deployment:
    return pb.Deployment(
        id=row.id,
        flow_name=row.flow_name,
        name=row.name,
        version=row.version,
        description=row.description,
        tags=row.tags,
        entrypoint=row.entrypoint,
        working_directory=row.working_directory,
        parameters=dict_to_struct(row.parameters),
        parameter_schema=dict_to_struct(row.parameter_schema),
        job_variables=dict_to_struct(row.job_variables),
        work_pool_name=row.work_pool_name,
        work_queue_name=row.work_queue_name,
        schedules=[schedule_row_to_pb(s) for s in schedule_rows],
        paused=row.paused,
        concurrency_limit=row.concurrency_limit,
        collision_strategy=COLLISION_VALUES.get(row.collision_strategy, pb.ENQUEUE),
        created=to_timestamp(row.created),
        updated=to_timestamp(row.updated),
        retries=row.retries,
        retry_delay_seconds=row.retry_delay_seconds,
    )


def pool_to_pb(row: Any) -> pb.WorkPool:
    return pb.WorkPool(
        id=row.id,
        name=row.name,
        type=row.type,
        description=row.description,
        base_job_template=dict_to_struct(row.base_job_template),
        paused=row.paused,
        concurrency_limit=row.concurrency_limit,
        default_queue_name=row.default_queue_name,
        created=to_timestamp(row.created),
        updated=to_timestamp(row.updated),
    )


def queue_to_pb(row: Any) -> pb.WorkQueue:
    return pb.WorkQueue(
        id=row.id,
        work_pool_name=row.work_pool_name,
        name=row.name,
        priority=row.priority,
        concurrency_limit=row.concurrency_limit,
        paused=row.paused,
        description=row.description,
        created=to_timestamp(row.created),
    )


def worker_to_pb(row: Any) -> pb.Worker:
    return pb.Worker(
        id=row.id,
        name=row.name,
        work_pool_name=row.work_pool_name,
        status=row.status,
        last_heartbeat=to_timestamp(row.last_heartbeat),
        free_slots=row.free_slots,
        work_queue_names=row.work_queue_names,
        active_flow_run_ids=row.active_flow_run_ids,
        labels=row.labels,
    )
