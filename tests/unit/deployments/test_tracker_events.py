"""The deployments tracker's reading of orchestration's flow-run events, on the bytes
orchestration really publishes (``weir_orchestration.events``)."""

from __future__ import annotations

from datetime import UTC, datetime

from weir.v1 import common_pb2
from weir_deployments.tracker import _DEPLOYMENT_ID, _parse
from weir_orchestration.events import RunRef, state_changed
from weir_orchestration.policy import PENDING, RUNNING, RunKind, State

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _event_bytes(deployment_id: str) -> bytes:
    run = RunRef(RunKind.FLOW, "run-1", "my-run", "flow-1", "my-flow", deployment_id=deployment_id, tags=["t"])
    old, new = State(PENDING, "Pending", NOW), State(RUNNING, "Running", NOW)
    return state_changed(run, old, new, new).data


def test_an_event_about_a_deployment_run_carries_the_bytes_the_tracker_looks_for() -> None:
    data = _event_bytes("dep-9")
    assert _DEPLOYMENT_ID in data
    parsed = _parse(common_pb2.Event.FromString(data))
    assert parsed is not None
    run_id, verb, facts = parsed
    assert (run_id, verb, facts["type"], facts["name"]) == ("run-1", "Running", "RUNNING", "Running")


def test_an_event_about_a_run_without_a_deployment_is_skipped_before_decoding() -> None:
    data = _event_bytes("")
    assert _DEPLOYMENT_ID not in data
    assert _parse(common_pb2.Event.FromString(data)) is None
