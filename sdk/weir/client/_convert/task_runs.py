"""Task runs and the task-run filter."""

from __future__ import annotations

from weir._proto import dict_to_struct, struct_to_dict
from weir.client._convert._common import opt, range_field, set_time_range, set_ts, ts
from weir.client._convert.flow_runs import policy_from_proto, policy_to_proto
from weir.client._convert.states import (
    optional_state,
    state_to_proto,
    state_type_from_proto,
    state_type_to_proto,
)
from weir.client.types import TaskRun, TaskRunFilter
from weir.v1 import orchestration_pb2


def task_run_from_proto(msg: orchestration_pb2.TaskRun) -> TaskRun:
    return TaskRun(
        id=msg.id,
        flow_run_id=msg.flow_run_id,
        name=msg.name,
        task_key=msg.task_key,
        dynamic_key=msg.dynamic_key,
        cache_key=opt(msg.cache_key),
        tags=tuple(msg.tags),
        state=optional_state(msg),
        policy=policy_from_proto(msg.policy),
        run_count=msg.run_count,
        task_inputs=struct_to_dict(msg.task_inputs),
        expected_start_time=ts(msg, "expected_start_time"),
        start_time=ts(msg, "start_time"),
        end_time=ts(msg, "end_time"),
        total_run_time_seconds=msg.total_run_time_seconds,
        created=ts(msg, "created"),
        updated=ts(msg, "updated"),
    )


def task_run_to_proto(value: TaskRun) -> orchestration_pb2.TaskRun:
    msg = orchestration_pb2.TaskRun(
        id=value.id,
        flow_run_id=value.flow_run_id,
        name=value.name,
        task_key=value.task_key,
        dynamic_key=value.dynamic_key,
        cache_key=value.cache_key or "",
        tags=value.tags,
        policy=policy_to_proto(value.policy),
        run_count=value.run_count,
        task_inputs=dict_to_struct(value.task_inputs),
        total_run_time_seconds=value.total_run_time_seconds,
    )
    if value.state is not None:
        msg.state.CopyFrom(state_to_proto(value.state))
    for name in ("expected_start_time", "start_time", "end_time", "created", "updated"):
        set_ts(msg, name, getattr(value, name))
    return msg


def task_run_filter_to_proto(value: TaskRunFilter | None) -> orchestration_pb2.TaskRunFilter:
    value = value or TaskRunFilter()
    msg = orchestration_pb2.TaskRunFilter(
        ids=value.ids,
        flow_run_ids=value.flow_run_ids,
        state_types=[state_type_to_proto(t) for t in value.state_types],
        state_names=value.state_names,
        name_like=value.name_like or "",
        tags_all=value.tags_all,
    )
    set_time_range(msg, "created", value.created)
    set_time_range(msg, "start_time", value.start_time)
    return msg


def task_run_filter_from_proto(msg: orchestration_pb2.TaskRunFilter) -> TaskRunFilter:
    return TaskRunFilter(
        ids=tuple(msg.ids),
        flow_run_ids=tuple(msg.flow_run_ids),
        state_types=tuple(state_type_from_proto(t) for t in msg.state_types),
        state_names=tuple(msg.state_names),
        name_like=opt(msg.name_like),
        tags_all=tuple(msg.tags_all),
        created=range_field(msg, "created"),
        start_time=range_field(msg, "start_time"),
    )
