"""Events to rows and back."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from weir_events.records import event_from_row, event_row, invalid_reason, payload_dict, resource_rows
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
    rows = resource_rows(event_row(event, received=T0))
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


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"n": 3, "x": 1.5, "neg": -7, "big": 2**60, "tiny": 1e-300, "neg_zero": -0.0, "max": 1.7976931348623157e308},
        {"ok": True, "no": False, "none": None, "s": 'héllo ✓ "q"\n', "empty": ""},
        {"nested": {"deeper": {"k": [1, 2.25, {"a": None}, [True, "x"]], "e": {}}, "list": []}},
        {"intended": {"from": None, "to": "RUNNING"}, "state": {"id": "s", "scheduled_time": "2030-01-01T00:00:00"}},
    ],
)
def test_payload_dict_is_message_to_dict(payload: dict[str, Any]) -> None:
    struct = Struct()
    struct.update(payload)
    struct.fields["unset"].Clear()  # a Value with no kind: null, as MessageToDict has it
    expected = json_format.MessageToDict(struct)
    got = payload_dict(struct)
    assert got == expected
    # The stored JSON text too: numbers stay floats (3.0) and keys keep their order.
    assert json.dumps(got) == json.dumps(expected)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_payload_dict_refuses_what_message_to_dict_refuses(number: float) -> None:
    struct = Struct()
    struct.update({"deep": [{"n": number}]})
    with pytest.raises(ValueError):
        json_format.MessageToDict(struct)
    with pytest.raises(ValueError):
        payload_dict(struct)
