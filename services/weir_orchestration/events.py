"""The events the orchestration service emits (always through the outbox).

* ``weir.flow.created`` / ``weir.flow.deleted``
* ``weir.flow-run.created`` / ``weir.flow-run.deleted`` and one
  ``weir.flow-run.<StateName>`` per state written (``weir.flow-run.Running``)
* the same for task runs under ``weir.task-run.``
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from weir.v1 import common_pb2
from weir_kit.events import new_event, resource
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


def _state_labels(state: State | None) -> dict[str, str]:
    if state is None:
        return {}
    return {"weir.state-type": type_name(state.type), "weir.state-name": state.name}


def _related(run: RunRef) -> list[dict[str, str]]:
    out = []
    if run.flow_run_id:
        out.append(resource(f"weir.flow-run.{run.flow_run_id}", role="flow-run"))
    if run.flow_id:
        out.append(resource(f"weir.flow.{run.flow_id}", name=run.flow_name, role="flow"))
    if run.deployment_id:
        out.append(resource(f"weir.deployment.{run.deployment_id}", role="deployment"))
    out += [resource(f"weir.tag.{tag}", role="tag") for tag in run.tags]
    return out


def _run_resource(run: RunRef, state: State | None) -> dict[str, str]:
    return resource(f"{_PREFIX[run.kind]}.{run.id}", name=run.name, **_state_labels(state))


def _state_payload(state: State | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {"id": state.id, "type": type_name(state.type), "name": state.name, "message": state.message}


def state_changed(run: RunRef, old: State | None, proposed: State, written: State) -> common_pb2.Event:
    """``weir.flow-run.<StateName>``: a state was written on a run."""
    payload = {
        "intended": {
            "from": type_name(old.type) if old else None,
            "to": type_name(proposed.type),
        },
        "initial_state": _state_payload(old),
        "validated_state": _state_payload(written),
    }
    return new_event(
        f"{_PREFIX[run.kind]}.{written.name}",
        _run_resource(run, written),
        occurred=written.timestamp,
        related=_related(run),
        payload=payload,
    )


def run_changed(run: RunRef, verb: str, occurred: datetime, state: State | None = None) -> common_pb2.Event:
    """``weir.flow-run.created`` / ``weir.task-run.deleted`` ..."""
    return new_event(f"{_PREFIX[run.kind]}.{verb}", _run_resource(run, state), occurred=occurred, related=_related(run))


def flow_changed(flow_id: str, name: str, tags: list[str], verb: str, occurred: datetime) -> common_pb2.Event:
    return new_event(
        f"weir.flow.{verb}",
        resource(f"weir.flow.{flow_id}", name=name),
        occurred=occurred,
        related=[resource(f"weir.tag.{tag}", role="tag") for tag in tags],
    )
