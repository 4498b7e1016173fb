"""The events the orchestration service emits (always through the outbox).

* ``weir.flow.created`` / ``weir.flow.deleted``
* ``weir.flow-run.created`` / ``weir.flow-run.deleted`` and one
  ``weir.flow-run.<StateName>`` per state written (``weir.flow-run.Running``)
* the same for task runs under ``weir.task-run.``
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

from weir._ids import new_id
from weir.v1 import common_pb2
from weir_kit import wire
from weir_kit.events import RESOURCE_ID, RESOURCE_NAME, Packed, new_event, resource
from weir_orchestration.policy import RunKind, State, type_name

_PREFIX = {RunKind.FLOW: "weir.flow-run", RunKind.TASK: "weir.task-run"}


@dataclass
class RunRef:
    """What an event needs to know about a run."""

    kind: RunKind
    id: str
    name: str
    flow_id: str = ""
    flow_name: str = ""
    flow_run_id: str = ""  # task runs: the flow run they belong to
    deployment_id: str = ""
    tags: list[str] = field(default_factory=list)


# Event's fields (protos/weir/v1/common.proto).
_ID, _OCCURRED, _EVENT, _RESOURCE, _PAYLOAD = (wire.tag(n, 2) for n in (1, 2, 3, 4, 6))


@functools.lru_cache(maxsize=1024)
def _related_bytes(flow_run_id: str, flow_id: str, flow_name: str, deployment_id: str, tags: tuple[str, ...]) -> bytes:
    """An event's ``related`` resources, encoded once per flow run (and tag set): every task
    run of a SyncRuns batch shares them."""
    out = []
    if flow_run_id:
        out.append(resource(f"weir.flow-run.{flow_run_id}", role="flow-run"))
    if flow_id:
        out.append(resource(f"weir.flow.{flow_id}", name=flow_name, role="flow"))
    if deployment_id:
        out.append(resource(f"weir.deployment.{deployment_id}", role="deployment"))
    out += [resource(f"weir.tag.{tag}", role="tag") for tag in tags]
    return common_pb2.Event(related=[common_pb2.Resource(labels=labels) for labels in out]).SerializeToString()


@functools.lru_cache(maxsize=256)
def _state_labels_bytes(state_type: int, name: str) -> bytes:
    return wire.label("weir.state-type", type_name(state_type)) + wire.label("weir.state-name", name)


@functools.lru_cache(maxsize=256)
def _timestamp(value: datetime) -> bytes:
    # Every event of a SyncRuns batch occurs at the batch's ``now``.
    return wire.timestamp(value)


def _run_event(run: RunRef, name: str, occurred: datetime, state: State | None, payload: bytes = b"") -> Packed:
    """An event about ``run``, encoded (``weir_kit.wire``): its own fields, then the related
    resources it shares with every event of its flow run."""
    labels = wire.label(RESOURCE_ID, f"{_PREFIX[run.kind]}.{run.id}")
    if run.name:
        labels += wire.label(RESOURCE_NAME, run.name)
    if state is not None:
        labels += _state_labels_bytes(state.type, state.name)
    event_id, event = new_id(), f"{_PREFIX[run.kind]}.{name}"
    data = (
        wire.text(_ID, event_id)
        + wire.delimited(_OCCURRED, _timestamp(occurred))
        + wire.text(_EVENT, event)
        + wire.delimited(_RESOURCE, labels)
        + _related_bytes(run.flow_run_id, run.flow_id, run.flow_name, run.deployment_id, tuple(run.tags))
    )
    if payload:
        data += wire.delimited(_PAYLOAD, payload)
    return Packed(event_id, event, data)


@functools.lru_cache(maxsize=1024)
def _state_fields(state_type: int, name: str, message: str, scheduled_time: str | None) -> bytes:
    """What a state's payload holds besides its id; many states share it."""
    fields = (
        wire.entry("type", wire.string_value(type_name(state_type)))
        + wire.entry("name", wire.string_value(name))
        + wire.entry("message", wire.string_value(message))
    )
    if scheduled_time is not None:
        # The deployments service follows runs from these events and needs the time a run waits for.
        fields += wire.entry("scheduled_time", wire.string_value(scheduled_time))
    return fields


def _state_value(state: State | None) -> bytes:
    if state is None:
        return wire.NULL_VALUE
    # By its text: equal instants in two zones are one cache key but two texts.
    when = state.details.scheduled_time
    rest = _state_fields(state.type, state.name, state.message, None if when is None else when.isoformat())
    return wire.struct_value(wire.entry("id", wire.string_value(state.id)) + rest)


@functools.lru_cache(maxsize=64)
def _intended(from_type: int | None, to_type: int) -> bytes:
    source = wire.NULL_VALUE if from_type is None else wire.string_value(type_name(from_type))
    return wire.entry(
        "intended",
        wire.struct_value(wire.entry("from", source) + wire.entry("to", wire.string_value(type_name(to_type)))),
    )


def state_changed(run: RunRef, old: State | None, proposed: State, written: State) -> Packed:
    """``weir.flow-run.<StateName>``: a state was written on a run.

    Payload: ``intended`` (``from``/``to`` state types), ``initial_state`` (null
    for a new run) and ``validated_state``, each state with its id, type, name,
    message and, when set, ``scheduled_time``.
    """
    payload = (
        _intended(None if old is None else old.type, proposed.type)
        + wire.entry("initial_state", _state_value(old))
        + wire.entry("validated_state", _state_value(written))
    )
    return _run_event(run, written.name, written.timestamp, written, payload)


def run_changed(run: RunRef, verb: str, occurred: datetime, state: State | None = None) -> Packed:
    """``weir.flow-run.created`` / ``weir.task-run.deleted`` ..."""
    return _run_event(run, verb, occurred, state)


def flow_changed(flow_id: str, name: str, tags: list[str], verb: str, occurred: datetime) -> common_pb2.Event:
    return new_event(
        f"weir.flow.{verb}",
        resource(f"weir.flow.{flow_id}", name=name),
        occurred=occurred,
        related=[resource(f"weir.tag.{tag}", role="tag") for tag in tags],
    )
