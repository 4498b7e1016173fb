"""The orchestration events, encoded by hand (``weir_kit.wire``), parse back into exactly the
``Event`` that the protobuf API builds from the same run and states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from weir.v1 import common_pb2
from weir_kit.events import Packed
from weir_orchestration import events
from weir_orchestration.policy import COMPLETED, PENDING, SCHEDULED, RunKind, State, StateDetails, type_name

texts = st.text(max_size=300)  # past 127 bytes, lengths take two varint bytes
# Before 1970 too (negative seconds). Hypothesis takes naive bounds and adds the zone itself.
times = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))  # noqa: DTZ001
runs = st.builds(
    events.RunRef,
    kind=st.sampled_from(list(RunKind)),
    id=st.uuids().map(str),
    name=texts,
    flow_id=st.one_of(st.just(""), st.uuids().map(str)),
    flow_name=texts,
    flow_run_id=st.one_of(st.just(""), st.uuids().map(str)),
    deployment_id=st.one_of(st.just(""), st.uuids().map(str)),
    tags=st.lists(texts, max_size=3),
)
states = st.builds(
    State,
    type=st.sampled_from([PENDING, SCHEDULED, COMPLETED]),
    name=texts,
    timestamp=times,
    id=st.uuids().map(str),
    message=texts,
    details=st.builds(StateDetails, scheduled_time=st.one_of(st.none(), times)),
)


def _resource(resource_id: str, **labels: str) -> common_pb2.Resource:
    out = common_pb2.Resource(labels={"weir.resource.id": resource_id})
    out.labels.update({f"weir.resource.{k}": v for k, v in labels.items() if v})
    return out


def _state(state: State | None) -> Any:
    if state is None:
        return None
    out = {"id": state.id, "type": type_name(state.type), "name": state.name, "message": state.message}
    if state.details.scheduled_time is not None:
        out["scheduled_time"] = state.details.scheduled_time.isoformat()
    return out


def expected(
    packed: Packed, run: events.RunRef, name: str, occurred: datetime, state: State | None
) -> common_pb2.Event:
    """The event as the protobuf API builds it (its id is the one the encoder drew)."""
    prefix = "weir.flow-run" if run.kind is RunKind.FLOW else "weir.task-run"
    when = timestamp_pb2.Timestamp()
    when.FromDatetime(occurred)
    event = common_pb2.Event(
        id=packed.id, event=f"{prefix}.{name}", occurred=when, resource=_resource(f"{prefix}.{run.id}", name=run.name)
    )
    if state is not None:
        event.resource.labels.update({"weir.state-type": type_name(state.type), "weir.state-name": state.name})
    if run.flow_run_id:
        event.related.append(_resource(f"weir.flow-run.{run.flow_run_id}", role="flow-run"))
    if run.flow_id:
        event.related.append(_resource(f"weir.flow.{run.flow_id}", name=run.flow_name, role="flow"))
    if run.deployment_id:
        event.related.append(_resource(f"weir.deployment.{run.deployment_id}", role="deployment"))
    event.related.extend(_resource(f"weir.tag.{tag}", role="tag") for tag in run.tags)
    return event


@settings(max_examples=200, deadline=None)
@given(run=runs, verb=st.sampled_from(["created", "deleted"]), occurred=times, state=st.one_of(st.none(), states))
def test_run_changed_is_the_event_the_api_builds(
    run: events.RunRef, verb: str, occurred: datetime, state: State | None
) -> None:
    packed = events.run_changed(run, verb, occurred, state)
    want = expected(packed, run, verb, occurred, state)
    assert packed.to_pb() == want
    assert packed.event == want.event
    assert len(packed.id) == 36


@settings(max_examples=200, deadline=None)
@given(run=runs, old=st.one_of(st.none(), states), proposed=states, written=states)
def test_state_changed_is_the_event_the_api_builds(
    run: events.RunRef, old: State | None, proposed: State, written: State
) -> None:
    packed = events.state_changed(run, old, proposed, written)
    want = expected(packed, run, written.name, written.timestamp, written)
    payload = {
        "intended": {"from": None if old is None else type_name(old.type), "to": type_name(proposed.type)},
        "initial_state": _state(old),
        "validated_state": _state(written),
    }
    want.payload.update(payload)
    got = packed.to_pb()
    assert got == want
    # Each map entry once: a key written twice would parse as its last value and hide a bug.
    assert len(got.payload.fields) == 3 and set(got.payload.fields) == set(payload)


def test_a_null_initial_state_is_a_null_value() -> None:
    now = datetime.now(UTC)
    run = events.RunRef(RunKind.TASK, "0b5f6c9e-3d1a-4e8f-9a2b-7c4d5e6f7a8b", "t")
    written = State(PENDING, "Pending", now, details=StateDetails(scheduled_time=now + timedelta(seconds=5)))
    got = events.state_changed(run, None, written, written).to_pb()
    assert got.payload.fields["initial_state"].WhichOneof("kind") == "null_value"
    assert got.payload.fields["intended"].struct_value.fields["from"].null_value == struct_pb2.NULL_VALUE
    validated = got.payload.fields["validated_state"].struct_value.fields
    assert validated["scheduled_time"].string_value == written.details.scheduled_time.isoformat()  # type: ignore[union-attr]


def test_a_scheduled_time_keeps_its_own_zone_when_an_equal_instant_came_first() -> None:
    run = events.RunRef(RunKind.FLOW, "0b5f6c9e-3d1a-4e8f-9a2b-7c4d5e6f7a8b", "r")
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    for when in (at, at.astimezone(timezone(timedelta(hours=2)))):  # equal, and equal hashes
        state = State(SCHEDULED, "Scheduled", at, details=StateDetails(scheduled_time=when))
        got = events.state_changed(run, None, state, state).to_pb()
        validated = got.payload.fields["validated_state"].struct_value.fields
        assert validated["scheduled_time"].string_value == when.isoformat()
