"""Events to rows and back."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from weir_events.records import event_from_row, event_row, invalid_reason, resource_rows
from weir_kit.events import new_event, resource

T0 = datetime(2030, 1, 1, 8, 30, 15, 123456, tzinfo=UTC)


def test_round_trip_keeps_every_field() -> None:
    event = new_event(
        "weir.flow-run.Completed",
        resource("weir.flow-run.1", name="etl"),
        occurred=T0,
        related=[resource("weir.flow.2", role="flow")],
        payload={"n": 1.5, "tags": ["a"], "nested": {"k": None}},
        follows="prev",
    )
    row = event_row(event, received=T0)
    back = event_from_row(SimpleNamespace(**row))
    expected = type(event)()
    expected.CopyFrom(event)
    expected.received.FromDatetime(T0)
    assert back == expected


def test_resource_rows_cover_resource_and_related_once() -> None:
    event = new_event(
        "e",
        resource("r1"),
        occurred=T0,
        related=[resource("r2", role="flow"), resource("r2", role="flow"), resource("r1", role="parent"), {"x": "y"}],
    )
    rows = resource_rows(event)
    assert {(r["resource_id"], r["role"]) for r in rows} == {("r1", ""), ("r2", "flow"), ("r1", "parent")}
    assert len(rows) == 3
    assert all(r["event_id"] == event.id and r["occurred"] == T0 for r in rows)


def test_invalid_reason() -> None:
    good = new_event("e", resource("r"), occurred=T0)
    assert invalid_reason(good) is None
    no_resource = type(good)()
    no_resource.CopyFrom(good)
    no_resource.resource.labels.clear()
    assert "weir.resource.id" in (invalid_reason(no_resource) or "")
    no_id = type(good)()
    no_id.CopyFrom(good)
    no_id.id = ""
    assert invalid_reason(no_id)
