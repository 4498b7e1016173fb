"""States, state details and proposal results."""

from __future__ import annotations

from weir._proto import to_value, value_to_python
from weir.client._convert._common import opt, set_ts, ts
from weir.client.types import (
    Decision,
    ProposalResult,
    State,
    StateDetails,
    StateType,
)
from weir.v1 import common_pb2, orchestration_pb2

# Enum conversions by table: the protobuf enum wrappers' Name()/Value() cost a few us each, and
# every state that crosses the wire takes one or two.
_STATE_TYPE_BY_NUMBER = {common_pb2.StateType.Value(t.value): t for t in StateType}
_STATE_TYPE_NUMBER = {t: n for n, t in _STATE_TYPE_BY_NUMBER.items()}
_DECISION_BY_NUMBER = {orchestration_pb2.Decision.Value(d.value): d for d in Decision}


def state_type_to_proto(value: StateType) -> common_pb2.StateType.ValueType:
    return _STATE_TYPE_NUMBER[value]


def state_type_from_proto(value: common_pb2.StateType.ValueType) -> StateType:
    found = _STATE_TYPE_BY_NUMBER.get(value)
    if found is None:
        if value == common_pb2.STATE_TYPE_UNSPECIFIED:
            raise ValueError("state type is unspecified")
        raise ValueError(f"unknown state type {value}")
    return found


#: Most states carry no details: they share this one (the models are frozen).
_NO_DETAILS = StateDetails()


def details_from_proto(msg: common_pb2.StateDetails) -> StateDetails:
    if not msg.ByteSize():
        return _NO_DETAILS
    return StateDetails(
        scheduled_time=ts(msg, "scheduled_time"),
        cache_key=opt(msg.cache_key),
        cache_expiration=ts(msg, "cache_expiration"),
        retry_count=msg.retry_count,
        result_ref=opt(msg.result_ref),
        pause_timeout=ts(msg, "pause_timeout"),
        pause_reschedule=msg.pause_reschedule,
        pause_key=opt(msg.pause_key),
        cached_from_task_run_id=opt(msg.cached_from_task_run_id),
        fencing_token=opt(msg.fencing_token),
        refresh_cache=msg.refresh_cache,
    )


def details_to_proto(value: StateDetails) -> common_pb2.StateDetails:
    msg = common_pb2.StateDetails(
        cache_key=value.cache_key or "",
        retry_count=value.retry_count,
        result_ref=value.result_ref or "",
        pause_reschedule=value.pause_reschedule,
        pause_key=value.pause_key or "",
        cached_from_task_run_id=value.cached_from_task_run_id or "",
        fencing_token=value.fencing_token or "",
        refresh_cache=value.refresh_cache,
    )
    set_ts(msg, "scheduled_time", value.scheduled_time)
    set_ts(msg, "cache_expiration", value.cache_expiration)
    set_ts(msg, "pause_timeout", value.pause_timeout)
    return msg


def state_from_proto(msg: common_pb2.State) -> State:
    return State(
        id=opt(msg.id),
        type=state_type_from_proto(msg.type),
        name=opt(msg.name),
        timestamp=ts(msg, "timestamp"),
        message=opt(msg.message),
        details=details_from_proto(msg.details),
        data=value_to_python(msg.data) if msg.HasField("data") else None,
    )


def state_to_proto(value: State) -> common_pb2.State:
    msg = common_pb2.State(
        id=value.id or "",
        type=_STATE_TYPE_NUMBER[value.type],
        name=value.name or "",
        message=value.message or "",
    )
    if value.details != _NO_DETAILS:  # most proposals carry none: leave the field unset
        msg.details.CopyFrom(details_to_proto(value.details))
    set_ts(msg, "timestamp", value.timestamp)
    if value.data is not None:
        msg.data.CopyFrom(to_value(value.data))
    return msg


def optional_state(msg: object, name: str = "state") -> State | None:
    """The state in field ``name`` of ``msg``, ``None`` when unset."""
    return state_from_proto(getattr(msg, name)) if msg.HasField(name) else None  # type: ignore[attr-defined]


def proposal_to_proto(
    state: State,
    *,
    force: bool = False,
    idempotency_key: str | None = None,
    expected_state_id: str | None = None,
    fencing_token: str | None = None,
) -> orchestration_pb2.StateProposal:
    return orchestration_pb2.StateProposal(
        state=state_to_proto(state),
        force=force,
        idempotency_key=idempotency_key or "",
        expected_state_id=expected_state_id or "",
        fencing_token=fencing_token or "",
    )


def proposal_result_from_proto(msg: orchestration_pb2.ProposalResult) -> ProposalResult:
    decision = _DECISION_BY_NUMBER.get(msg.decision)
    if decision is None:
        raise ValueError(f"decision is unspecified or unknown ({msg.decision})")
    return ProposalResult(
        decision=decision,
        state=optional_state(msg),
        reason=opt(msg.reason),
        delay_seconds=msg.delay_seconds,
        rule=opt(msg.rule),
    )


def proposal_result_to_proto(value: ProposalResult) -> orchestration_pb2.ProposalResult:
    msg = orchestration_pb2.ProposalResult(
        decision=orchestration_pb2.Decision.Value(value.decision.value),
        reason=value.reason or "",
        delay_seconds=value.delay_seconds,
        rule=value.rule or "",
    )
    if value.state is not None:
        msg.state.CopyFrom(state_to_proto(value.state))
    return msg
