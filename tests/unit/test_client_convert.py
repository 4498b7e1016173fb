"""Proto <-> SDK type conversion round trips, and RPC error translation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import grpc
import pytest
from google.protobuf import timestamp_pb2

from weir import _proto
from weir.client._convert import events, flow_runs, flows, history, logs, states, task_runs
from weir.client._grpc import translate_error
from weir.client.types import (
    Decision,
    Event,
    EventFilter,
    Flow,
    FlowFilter,
    FlowRun,
    FlowRunFilter,
    HistoryBucket,
    LogFilter,
    LogRecord,
    ProposalResult,
    RunPolicy,
    State,
    StateCount,
    StateDetails,
    StateType,
    TaskRun,
    TaskRunFilter,
    TimeRange,
)
from weir.errors import InvalidArgument, NotFound, Unavailable
from weir.v1 import common_pb2, orchestration_pb2

T0 = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)

STATE = State(
    id="5b0c4f3e-0000-4000-8000-000000000001",
    type=StateType.SCHEDULED,
    name="AwaitingRetry",
    timestamp=T0,
    message="retry 2 of 3",
    details=StateDetails(
        scheduled_time=T1,
        cache_key="k",
        cache_expiration=T1,
        retry_count=2,
        result_ref="file:///tmp/r",
        pause_reschedule=True,
        fencing_token="tok",
    ),
    data={"error": "boom", "lines": [1, 2.5, None, True]},
)


# ------------------------------------------------------------- proto helpers


def test_timestamp_round_trip_keeps_microseconds_and_utc() -> None:
    other_zone = T0.astimezone(timezone(timedelta(hours=5)))
    back = _proto.timestamp_to_datetime(_proto.to_timestamp(other_zone))
    assert back == T0
    assert back.tzinfo is UTC


def test_unset_timestamp_is_none() -> None:
    assert _proto.timestamp_to_datetime(timestamp_pb2.Timestamp()) is None
    assert _proto.timestamp_to_datetime(None) is None
    assert _proto.to_timestamp(None) is None


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        _proto.to_timestamp(datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test


def test_struct_round_trip_keeps_ints_ints() -> None:
    value = {"n": 3, "x": 1.5, "s": "a", "b": False, "none": None, "nested": {"xs": [1, {"y": 2}]}}
    back = _proto.struct_to_dict(_proto.dict_to_struct(value))
    assert back == value
    assert isinstance(back["n"], int)
    assert _proto.struct_to_dict(_proto.dict_to_struct(None)) == {}


def test_value_round_trip_and_non_json_refused() -> None:
    for value in (None, True, 7, -2.25, "txt", [1, "a"], {"k": [None]}):
        assert _proto.value_to_python(_proto.to_value(value)) == value
    with pytest.raises(TypeError):
        _proto.to_value(object())


# ---------------------------------------------------------------- resources


def test_state_round_trip() -> None:
    assert states.state_from_proto(states.state_to_proto(STATE)) == STATE


def test_minimal_state_round_trip_has_no_empty_strings() -> None:
    state = State(type=StateType.RUNNING)
    back = states.state_from_proto(states.state_to_proto(state))
    assert back == state
    assert back.name is None and back.details.cache_key is None and back.data is None


def test_unspecified_state_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="unspecified"):
        states.state_from_proto(common_pb2.State())


def test_every_state_type_and_decision_converts_both_ways() -> None:
    for state_type in StateType:
        number = common_pb2.StateType.Value(state_type.value)
        assert states.state_type_to_proto(state_type) == number
        assert states.state_type_from_proto(number) is state_type
    with pytest.raises(ValueError, match="unknown state type 99"):
        states.state_type_from_proto(99)  # type: ignore[arg-type]
    for decision in Decision:
        msg = orchestration_pb2.ProposalResult(decision=orchestration_pb2.Decision.Value(decision.value))
        assert states.proposal_result_from_proto(msg).decision is decision
    with pytest.raises(ValueError, match="unspecified"):
        states.proposal_result_from_proto(orchestration_pb2.ProposalResult())


def test_state_details_are_sent_only_when_there_are_some() -> None:
    assert not states.state_to_proto(State(type=StateType.RUNNING)).HasField("details")
    one = State(type=StateType.PENDING, details=StateDetails(fencing_token="t"))
    msg = states.state_to_proto(one)
    assert msg.details.fencing_token == "t"
    assert states.state_from_proto(msg) == one


@pytest.mark.parametrize("decision", list(Decision))
def test_proposal_result_round_trip(decision: Decision) -> None:
    result = ProposalResult(decision=decision, state=STATE, reason="why", delay_seconds=1.5, rule="R")
    assert states.proposal_result_from_proto(states.proposal_result_to_proto(result)) == result


def test_proposal_carries_options() -> None:
    msg = states.proposal_to_proto(STATE, force=True, idempotency_key="i", expected_state_id="e")
    assert (msg.force, msg.idempotency_key, msg.expected_state_id, msg.fencing_token) == (True, "i", "e", "")


def test_flow_round_trip() -> None:
    flow = Flow(id="f1", name="etl", tags=("a", "b"), created=T0, updated=T1)
    assert flows.flow_from_proto(flows.flow_to_proto(flow)) == flow


def test_flow_run_round_trip() -> None:
    run = FlowRun(
        id="r1",
        flow_id="f1",
        name="brave-otter",
        flow_name="etl",
        parameters={"day": "mon", "n": 3},
        context={"k": [1]},
        tags=("nightly",),
        parent_task_run_id="t0",
        deployment_id="d1",
        idempotency_key="idem",
        state=STATE,
        policy=RunPolicy(retries=2, retry_delay_seconds=(1.0, 10.0)),
        run_count=1,
        expected_start_time=T0,
        start_time=T0,
        end_time=T1,
        total_run_time_seconds=300.0,
        heartbeat=T1,
        created=T0,
        updated=T1,
    )
    assert flow_runs.flow_run_from_proto(flow_runs.flow_run_to_proto(run)) == run


def test_flow_run_unset_references_are_none() -> None:
    run = flow_runs.flow_run_from_proto(orchestration_pb2.FlowRun(id="r", flow_id="f", name="n"))
    assert run.parent_task_run_id is None and run.deployment_id is None
    assert run.state is None and run.start_time is None and run.parameters == {}


def test_task_run_round_trip() -> None:
    task_run = TaskRun(
        id="t1",
        flow_run_id="r1",
        name="load-0",
        task_key="mod.load",
        dynamic_key="abc:0",
        cache_key="ck",
        tags=("db",),
        state=STATE,
        policy=RunPolicy(retries=1),
        run_count=2,
        task_inputs={"x": ["r1"]},
        start_time=T0,
        created=T0,
    )
    assert task_runs.task_run_from_proto(task_runs.task_run_to_proto(task_run)) == task_run


def test_log_round_trip() -> None:
    record = LogRecord(
        id="l1", flow_run_id="r1", task_run_id="t1", name="weir.task", level=30, message="hm", timestamp=T0
    )
    assert logs.log_from_proto(logs.log_to_proto(record)) == record


def test_event_round_trip() -> None:
    event = Event(
        id="e1",
        occurred=T0,
        event="weir.flow-run.Completed",
        resource={"weir.resource.id": "weir.flow-run.r1", "weir.resource.name": "brave-otter"},
        related=({"weir.resource.id": "weir.flow.f1", "weir.resource.role": "flow"},),
        payload={"validated_state": {"type": "COMPLETED"}},
        follows="e0",
        received=T1,
    )
    assert events.event_from_proto(events.event_to_proto(event)) == event
    assert event.resource_id == "weir.flow-run.r1"


def test_history_bucket_round_trip() -> None:
    bucket = HistoryBucket(
        start=T0,
        end=T1,
        states=(
            StateCount(type=StateType.COMPLETED, name="Completed", count=4),
            StateCount(type=StateType.FAILED, count=1),
        ),
    )
    assert history.bucket_from_proto(history.bucket_to_proto(bucket)) == bucket


# ------------------------------------------------------------------ filters


def test_flow_run_filter_round_trip() -> None:
    flt = FlowRunFilter(
        ids=("a",),
        state_types=(StateType.FAILED, StateType.CRASHED),
        state_names=("Late",),
        name_like="otter",
        tags_all=("x", "y"),
        flow_ids=("f",),
        flow_names=("etl",),
        parent_task_run_id="t",
        parent_flow_run_id="p",
        deployment_id="d",
        created=TimeRange(after=T0, before=T1),
        expected_start_time=TimeRange(after=T0),
        start_time=TimeRange(before=T1),
    )
    assert flow_runs.flow_run_filter_from_proto(flow_runs.flow_run_filter_to_proto(flt)) == flt


def test_empty_filters_convert_to_empty_messages() -> None:
    assert flow_runs.flow_run_filter_to_proto(None) == orchestration_pb2.FlowRunFilter()
    assert flow_runs.flow_run_filter_to_proto(None).HasField("created") is False


def test_other_filters_round_trip() -> None:
    tf = TaskRunFilter(flow_run_ids=("r",), state_types=(StateType.RUNNING,), created=TimeRange(after=T0))
    assert task_runs.task_run_filter_from_proto(task_runs.task_run_filter_to_proto(tf)) == tf
    lf = LogFilter(flow_run_id="r", level_ge=30, text_like="boom", timestamp=TimeRange(before=T1))
    assert logs.log_filter_from_proto(logs.log_filter_to_proto(lf)) == lf
    ef = EventFilter(event_prefixes=("weir.flow-run.",), resource_ids=("x",), occurred=TimeRange(after=T0))
    assert events.event_filter_from_proto(events.event_filter_to_proto(ef)) == ef
    ff = FlowFilter(name_like="e", names=("etl",), tags_all=("t",))
    assert flows.flow_filter_from_proto(flows.flow_filter_to_proto(ff)) == ff


def test_state_type_parse_and_finality() -> None:
    assert StateType.parse(" completed ") is StateType.COMPLETED
    assert STATE.is_scheduled() and not STATE.is_final()
    assert State(type=StateType.CRASHED).is_final()
    with pytest.raises(ValueError, match="unknown state type"):
        StateType.parse("done")


# ----------------------------------------------------------- error mapping


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple = ()) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailing


def test_translate_error_reads_field_from_trailing_metadata() -> None:
    err = translate_error(_FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad name", (("weir-field", "name"),)))
    assert isinstance(err, InvalidArgument)
    assert (err.message, err.field) == ("bad name", "name")


def test_translate_error_names_the_unreachable_address() -> None:
    err = translate_error(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, "refused"), address="h:1")
    assert isinstance(err, Unavailable)
    assert "h:1" in str(err) and "refused" in str(err)
    assert isinstance(translate_error(_FakeRpcError(grpc.StatusCode.NOT_FOUND, "no run")), NotFound)
