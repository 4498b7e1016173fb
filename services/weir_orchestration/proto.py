"""Rows and domain values <-> protobuf messages, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2

from weir._ids import new_id
from weir._proto import dict_to_struct, struct_to_dict, timestamp_to_datetime, to_timestamp, to_value, value_to_python
from weir.errors import InvalidArgument
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb
from weir_kit.values import free_text, parse_id, short_text
from weir_orchestration.policy import ALL_TYPES, NO_DETAILS, RunPolicy, State, StateDetails, default_name, type_name

_DETAIL_TIMES = ("scheduled_time", "cache_expiration", "pause_timeout")


# ------------------------------------------------------------------ values


def parse_state_type(value: int, field: str) -> int:
    if value not in ALL_TYPES:
        raise InvalidArgument(f"{field} has no state type {value}", field=field)
    return value


def state_type_from_text(text: str | None) -> int:
    return common_pb2.StateType.Value(text) if text else common_pb2.STATE_TYPE_UNSPECIFIED  # type: ignore[arg-type]


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _from_iso(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


ts = to_timestamp


# ------------------------------------------------------------------ states


def details_to_json(details: StateDetails) -> dict[str, Any]:
    """Only the fields that are set (most states set none: answered without a loop)."""
    if details is NO_DETAILS:
        return {}
    out: dict[str, Any] = {}
    for name, value in vars(details).items():
        if name in _DETAIL_TIMES:
            if value is not None:
                out[name] = _iso(value)
        elif value:
            out[name] = value
    return out


def details_from_json(raw: Mapping[str, Any] | None) -> StateDetails:
    if not raw:
        return NO_DETAILS
    known = {k: v for k, v in raw.items() if k in StateDetails.__dataclass_fields__}
    for name in _DETAIL_TIMES:
        if name in known:
            known[name] = _from_iso(known[name])
    return StateDetails(**known)


def details_from_pb(msg: common_pb2.StateDetails) -> StateDetails:
    if not msg.ByteSize():
        return NO_DETAILS
    return StateDetails(
        scheduled_time=timestamp_to_datetime(msg.scheduled_time) if msg.HasField("scheduled_time") else None,
        cache_key=msg.cache_key,
        cache_expiration=timestamp_to_datetime(msg.cache_expiration) if msg.HasField("cache_expiration") else None,
        retry_count=msg.retry_count,
        result_ref=msg.result_ref,
        pause_timeout=timestamp_to_datetime(msg.pause_timeout) if msg.HasField("pause_timeout") else None,
        pause_reschedule=msg.pause_reschedule,
        pause_key=msg.pause_key,
        cached_from_task_run_id=msg.cached_from_task_run_id,
        fencing_token=msg.fencing_token,
        refresh_cache=msg.refresh_cache,
    )


def details_to_pb(details: StateDetails) -> common_pb2.StateDetails:
    msg = common_pb2.StateDetails(
        cache_key=details.cache_key,
        retry_count=details.retry_count,
        result_ref=details.result_ref,
        pause_reschedule=details.pause_reschedule,
        pause_key=details.pause_key,
        cached_from_task_run_id=details.cached_from_task_run_id,
        fencing_token=details.fencing_token,
        refresh_cache=details.refresh_cache,
    )
    for name in _DETAIL_TIMES:
        value = getattr(details, name)
        if value is not None:
            getattr(msg, name).CopyFrom(to_timestamp(value))
    return msg


def state_from_pb(msg: common_pb2.State, now: datetime, field: str) -> State:
    """A proposed state: validated, with an id, a name and a timestamp."""
    state_type = parse_state_type(msg.type, f"{field}.type")
    state_id = parse_id(msg.id, f"{field}.id", required=False) or new_id()
    when = timestamp_to_datetime(msg.timestamp) if msg.HasField("timestamp") else None
    details = details_from_pb(msg.details)
    short_text(details.cache_key, f"{field}.details.cache_key")
    return State(
        id=state_id,
        type=state_type,
        name=short_text(msg.name, f"{field}.name", 64) or default_name(state_type),
        timestamp=when or now,
        message=free_text(msg.message),
        details=details,
        data=value_to_python(msg.data) if msg.HasField("data") else None,
    )


def state_to_pb(state: State | None) -> common_pb2.State | None:
    if state is None:
        return None
    msg = common_pb2.State(
        id=state.id,
        type=state.type,  # type: ignore[arg-type]
        name=state.name,
        timestamp=to_timestamp(state.timestamp),
        message=state.message,
        details=details_to_pb(state.details),
    )
    if state.data is not None:
        msg.data.CopyFrom(to_value(state.data))
    return msg


def state_from_run_row(row: Any) -> State | None:
    """The current state denormalised on a flow-run or task-run row."""
    if row.state_id is None:
        return None
    return State(
        id=row.state_id,
        type=state_type_from_text(row.state_type),
        name=row.state_name,
        timestamp=row.state_timestamp,
        message=row.state_message or "",
        details=details_from_json(row.state_details),
        data=row.state_data,
    )


def state_from_history_row(row: Any) -> State:
    return State(
        id=row.id,
        type=state_type_from_text(row.type),
        name=row.name,
        timestamp=row.timestamp,
        message=row.message or "",
        details=details_from_json(row.details),
        data=row.data,
    )


def run_state_values(state: State) -> dict[str, Any]:
    """The ``state_*`` columns of a run row for ``state``."""
    return {
        "state_id": state.id,
        "state_type": type_name(state.type),
        "state_name": state.name,
        "state_timestamp": state.timestamp,
        "state_message": state.message or None,
        "state_details": details_to_json(state.details),
        "state_data": state.data,
    }


def history_values(run_id: str, kind: str, state: State, idempotency_key: str = "") -> dict[str, Any]:
    """A ``run_states`` row."""
    return {
        "id": state.id,
        "run_id": run_id,
        "run_kind": kind,
        "type": type_name(state.type),
        "name": state.name,
        "timestamp": state.timestamp,
        "message": state.message or None,
        "details": details_to_json(state.details),
        "data": state.data,
        "idempotency_key": idempotency_key or None,
    }


# ------------------------------------------------------------------- runs


def policy_from_pb(msg: pb.RunPolicy, field: str) -> RunPolicy:
    if msg.retries < 0:
        raise InvalidArgument(f"{field}.retries must be >= 0", field=f"{field}.retries")
    if any(d < 0 for d in msg.retry_delay_seconds):
        raise InvalidArgument(f"{field}.retry_delay_seconds must be >= 0", field=f"{field}.retry_delay_seconds")
    return RunPolicy(msg.retries, tuple(msg.retry_delay_seconds))


def policy_from_row(row: Any) -> RunPolicy:
    return RunPolicy(row.retries or 0, tuple(row.retry_delay_seconds or ()))


def _policy_to_pb(row: Any) -> pb.RunPolicy:
    return pb.RunPolicy(retries=row.retries or 0, retry_delay_seconds=row.retry_delay_seconds or [])


def struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    return dict_to_struct(value)


def plain(msg: struct_pb2.Struct) -> dict[str, Any]:
    return struct_to_dict(msg)


def flow_to_pb(row: Any) -> pb.Flow:
    return pb.Flow(id=row.id, name=row.name, tags=row.tags, created=ts(row.created), updated=ts(row.updated))


def flow_run_to_pb(row: Any) -> pb.FlowRun:
    return pb.FlowRun(
        id=row.id,
        flow_id=row.flow_id,
        flow_name=row.flow_name or "",
        name=row.name,
        parameters=struct(row.parameters),
        context=struct(row.context),
        tags=row.tags,
        parent_task_run_id=row.parent_task_run_id or "",
        deployment_id=row.deployment_id or "",
        idempotency_key=row.idempotency_key or "",
        state=state_to_pb(state_from_run_row(row)),
        policy=_policy_to_pb(row),
        run_count=row.run_count,
        expected_start_time=ts(row.expected_start_time),
        start_time=ts(row.start_time),
        end_time=ts(row.end_time),
        total_run_time_seconds=row.total_run_time or 0.0,
        heartbeat=ts(row.heartbeat),
        created=ts(row.created),
        updated=ts(row.updated),
    )


def task_run_to_pb(row: Any) -> pb.TaskRun:
    return pb.TaskRun(
        id=row.id,
        flow_run_id=row.flow_run_id,
        name=row.name,
        task_key=row.task_key,
        dynamic_key=row.dynamic_key,
        cache_key=row.cache_key or "",
        tags=row.tags,
        state=state_to_pb(state_from_run_row(row)),
        policy=_policy_to_pb(row),
        run_count=row.run_count,
        task_inputs=struct(row.task_inputs),
        expected_start_time=ts(row.expected_start_time),
        start_time=ts(row.start_time),
        end_time=ts(row.end_time),
        total_run_time_seconds=row.total_run_time or 0.0,
        created=ts(row.created),
        updated=ts(row.updated),
    )


def log_to_pb(row: Any) -> pb.LogRecord:
    return pb.LogRecord(
        id=row.id,
        flow_run_id=row.flow_run_id or "",
        task_run_id=row.task_run_id or "",
        name=row.name,
        level=row.level,
        message=row.message,
        timestamp=ts(row.timestamp),
    )
