"""Flow runs, run policies and the flow-run filter."""

from __future__ import annotations

from weir._proto import dict_to_struct, struct_to_dict
from weir.client._convert._common import opt, range_field, set_time_range, set_ts, ts
from weir.client._convert.states import (
    optional_state,
    state_to_proto,
    state_type_from_proto,
    state_type_to_proto,
)
from weir.client.types import FlowRun, FlowRunFilter, FlowRunSort, RunPolicy
from weir.v1 import orchestration_pb2


def policy_from_proto(msg: orchestration_pb2.RunPolicy) -> RunPolicy:
    return RunPolicy(retries=msg.retries, retry_delay_seconds=tuple(msg.retry_delay_seconds))


def policy_to_proto(value: RunPolicy | None) -> orchestration_pb2.RunPolicy:
    value = value or RunPolicy()
    return orchestration_pb2.RunPolicy(retries=value.retries, retry_delay_seconds=value.retry_delay_seconds)


def flow_run_from_proto(msg: orchestration_pb2.FlowRun) -> FlowRun:
    return FlowRun(
        id=msg.id,
        flow_id=msg.flow_id,
        name=msg.name,
        flow_name=opt(msg.flow_name),
        parameters=struct_to_dict(msg.parameters),
        context=struct_to_dict(msg.context),
        tags=tuple(msg.tags),
        parent_task_run_id=opt(msg.parent_task_run_id),
        deployment_id=opt(msg.deployment_id),
        idempotency_key=opt(msg.idempotency_key),
        state=optional_state(msg),
        policy=policy_from_proto(msg.policy),
        run_count=msg.run_count,
        expected_start_time=ts(msg, "expected_start_time"),
        start_time=ts(msg, "start_time"),
        end_time=ts(msg, "end_time"),
        total_run_time_seconds=msg.total_run_time_seconds,
        heartbeat=ts(msg, "heartbeat"),
        created=ts(msg, "created"),
        updated=ts(msg, "updated"),
    )


def flow_run_to_proto(value: FlowRun) -> orchestration_pb2.FlowRun:
    msg = orchestration_pb2.FlowRun(
        id=value.id,
        flow_id=value.flow_id,
        name=value.name,
        flow_name=value.flow_name or "",
        parameters=dict_to_struct(value.parameters),
        context=dict_to_struct(value.context),
        tags=value.tags,
        parent_task_run_id=value.parent_task_run_id or "",
        deployment_id=value.deployment_id or "",
        idempotency_key=value.idempotency_key or "",
        policy=policy_to_proto(value.policy),
        run_count=value.run_count,
        total_run_time_seconds=value.total_run_time_seconds,
    )
    if value.state is not None:
        msg.state.CopyFrom(state_to_proto(value.state))
    for name in ("expected_start_time", "start_time", "end_time", "heartbeat", "created", "updated"):
        set_ts(msg, name, getattr(value, name))
    return msg


def flow_run_filter_to_proto(value: FlowRunFilter | None) -> orchestration_pb2.FlowRunFilter:
    value = value or FlowRunFilter()
    msg = orchestration_pb2.FlowRunFilter(
        ids=value.ids,
        state_types=[state_type_to_proto(t) for t in value.state_types],
        state_names=value.state_names,
        name_like=value.name_like or "",
        tags_all=value.tags_all,
        flow_ids=value.flow_ids,
        flow_names=value.flow_names,
        parent_task_run_id=value.parent_task_run_id or "",
        parent_flow_run_id=value.parent_flow_run_id or "",
        deployment_id=value.deployment_id or "",
    )
    set_time_range(msg, "created", value.created)
    set_time_range(msg, "expected_start_time", value.expected_start_time)
    set_time_range(msg, "start_time", value.start_time)
    return msg


def flow_run_filter_from_proto(msg: orchestration_pb2.FlowRunFilter) -> FlowRunFilter:
    return FlowRunFilter(
        ids=tuple(msg.ids),
        state_types=tuple(state_type_from_proto(t) for t in msg.state_types),
        state_names=tuple(msg.state_names),
        name_like=opt(msg.name_like),
        tags_all=tuple(msg.tags_all),
        flow_ids=tuple(msg.flow_ids),
        flow_names=tuple(msg.flow_names),
        parent_task_run_id=opt(msg.parent_task_run_id),
        parent_flow_run_id=opt(msg.parent_flow_run_id),
        deployment_id=opt(msg.deployment_id),
        created=range_field(msg, "created"),
        expected_start_time=range_field(msg, "expected_start_time"),
        start_time=range_field(msg, "start_time"),
    )


def sort_to_proto(value: FlowRunSort | None) -> orchestration_pb2.FlowRunSort.ValueType:
    if value is None:
        return orchestration_pb2.FLOW_RUN_SORT_UNSPECIFIED
    return orchestration_pb2.FlowRunSort.Value(value.value)
