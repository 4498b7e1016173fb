"""Deployments, schedules, work pools, work queues, workers, job-variable checks."""

from __future__ import annotations

from datetime import timedelta

from weir._proto import dict_to_struct, struct_to_dict
from weir.client._convert._common import opt, set_ts, ts
from weir.client.types import (
    CollisionStrategy,
    Deployment,
    JobVariablesCheck,
    Schedule,
    Worker,
    WorkPool,
    WorkQueue,
)
from weir.v1 import deployments_pb2 as pb


def collision_to_proto(value: CollisionStrategy) -> pb.CollisionStrategy.ValueType:
    return pb.CollisionStrategy.Value(value.value)


def collision_from_proto(value: pb.CollisionStrategy.ValueType) -> CollisionStrategy:
    # UNSPECIFIED is what an older server (or an empty message) sends: the default.
    if value == pb.COLLISION_STRATEGY_UNSPECIFIED:
        return CollisionStrategy.ENQUEUE
    return CollisionStrategy(pb.CollisionStrategy.Name(value))


def schedule_to_proto(value: Schedule) -> pb.Schedule:
    msg = pb.Schedule(id=value.id or "", timezone=value.timezone, active=value.active)
    if value.interval is not None:
        msg.interval_seconds = value.interval.total_seconds()
    elif value.cron is not None:
        msg.cron = value.cron
    elif value.rrule is not None:
        msg.rrule = value.rrule
    set_ts(msg, "anchor", value.anchor)
    return msg


def schedule_from_proto(msg: pb.Schedule) -> Schedule:
    kind = msg.WhichOneof("kind")
    return Schedule(
        id=opt(msg.id),
        interval=timedelta(seconds=msg.interval_seconds) if kind == "interval_seconds" else None,
        cron=msg.cron if kind == "cron" else None,
        rrule=msg.rrule if kind == "rrule" else None,
        timezone=msg.timezone or "UTC",
        anchor=ts(msg, "anchor"),
        active=msg.active,
    )


def deployment_to_proto(value: Deployment) -> pb.Deployment:
    msg = pb.Deployment(
        id=value.id or "",
        flow_name=value.flow_name,
        name=value.name,
        version=value.version or "",
        description=value.description or "",
        tags=value.tags,
        entrypoint=value.entrypoint or "",
        working_directory=value.working_directory or "",
        parameters=dict_to_struct(value.parameters),
        parameter_schema=dict_to_struct(value.parameter_schema),
        job_variables=dict_to_struct(value.job_variables),
        work_pool_name=value.work_pool_name or "",
        work_queue_name=value.work_queue_name or "",
        schedules=[schedule_to_proto(s) for s in value.schedules],
        paused=value.paused,
        concurrency_limit=value.concurrency_limit,
        collision_strategy=collision_to_proto(value.collision_strategy),
        retries=value.retries,
        retry_delay_seconds=value.retry_delay_seconds,
    )
    set_ts(msg, "created", value.created)
    set_ts(msg, "updated", value.updated)
    return msg


def deployment_from_proto(msg: pb.Deployment) -> Deployment:
    return Deployment(
        id=opt(msg.id),
        flow_name=msg.flow_name,
        name=msg.name,
        version=opt(msg.version),
        description=opt(msg.description),
        tags=tuple(msg.tags),
        entrypoint=opt(msg.entrypoint),
        working_directory=opt(msg.working_directory),
        parameters=struct_to_dict(msg.parameters),
        parameter_schema=struct_to_dict(msg.parameter_schema),
        job_variables=struct_to_dict(msg.job_variables),
        work_pool_name=opt(msg.work_pool_name),
        work_queue_name=opt(msg.work_queue_name),
        schedules=tuple(schedule_from_proto(s) for s in msg.schedules),
        paused=msg.paused,
        concurrency_limit=msg.concurrency_limit,
        collision_strategy=collision_from_proto(msg.collision_strategy),
        retries=msg.retries,
        retry_delay_seconds=tuple(msg.retry_delay_seconds),
        created=ts(msg, "created"),
        updated=ts(msg, "updated"),
    )


def work_pool_to_proto(value: WorkPool) -> pb.WorkPool:
    msg = pb.WorkPool(
        id=value.id or "",
        name=value.name,
        type=value.type,
        base_job_template=dict_to_struct(value.base_job_template),
        paused=value.paused,
        concurrency_limit=value.concurrency_limit,
        default_queue_name=value.default_queue_name or "",
        description=value.description or "",
    )
    set_ts(msg, "created", value.created)
    set_ts(msg, "updated", value.updated)
    return msg


def work_pool_from_proto(msg: pb.WorkPool) -> WorkPool:
    return WorkPool(
        id=opt(msg.id),
        name=msg.name,
        type=msg.type,
        base_job_template=struct_to_dict(msg.base_job_template),
        paused=msg.paused,
        concurrency_limit=msg.concurrency_limit,
        default_queue_name=opt(msg.default_queue_name),
        description=opt(msg.description),
        created=ts(msg, "created"),
        updated=ts(msg, "updated"),
    )


def work_queue_to_proto(value: WorkQueue) -> pb.WorkQueue:
    msg = pb.WorkQueue(
        id=value.id or "",
        work_pool_name=value.work_pool_name,
        name=value.name,
        priority=value.priority,
        concurrency_limit=value.concurrency_limit,
        paused=value.paused,
        description=value.description or "",
    )
    set_ts(msg, "created", value.created)
    return msg


def work_queue_from_proto(msg: pb.WorkQueue) -> WorkQueue:
    return WorkQueue(
        id=opt(msg.id),
        work_pool_name=msg.work_pool_name,
        name=msg.name,
        priority=msg.priority,
        concurrency_limit=msg.concurrency_limit,
        paused=msg.paused,
        description=opt(msg.description),
        created=ts(msg, "created"),
    )


def worker_to_proto(value: Worker) -> pb.Worker:
    msg = pb.Worker(
        id=value.id,
        name=value.name,
        work_pool_name=value.work_pool_name,
        status=value.status,
        free_slots=value.free_slots,
        work_queue_names=value.work_queue_names,
        active_flow_run_ids=value.active_flow_run_ids,
        labels=value.labels,
    )
    set_ts(msg, "last_heartbeat", value.last_heartbeat)
    return msg


def worker_from_proto(msg: pb.Worker) -> Worker:
    return Worker(
        id=msg.id,
        name=msg.name,
        work_pool_name=msg.work_pool_name,
        status=msg.status,
        last_heartbeat=ts(msg, "last_heartbeat"),
        free_slots=msg.free_slots,
        work_queue_names=tuple(msg.work_queue_names),
        active_flow_run_ids=tuple(msg.active_flow_run_ids),
        labels=dict(msg.labels),
    )


def check_to_proto(value: JobVariablesCheck) -> pb.ValidateJobVariablesResponse:
    return pb.ValidateJobVariablesResponse(
        valid=value.valid, layer=value.layer or "", field=value.field or "", message=value.message or ""
    )


def check_from_proto(msg: pb.ValidateJobVariablesResponse) -> JobVariablesCheck:
    return JobVariablesCheck(valid=msg.valid, layer=opt(msg.layer), field=opt(msg.field), message=opt(msg.message))
