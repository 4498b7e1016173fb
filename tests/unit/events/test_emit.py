"""EmitEvents validation and completion, without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from weir.errors import InvalidArgument
from weir.v1 import common_pb2
from weir_events.emit import prepare
from weir_kit.settings import KitSettings

NOW = datetime(2030, 6, 1, 12, tzinfo=UTC)
SETTINGS = KitSettings()


def clock() -> datetime:
    return NOW


def _event(**kwargs) -> common_pb2.Event:
    kwargs.setdefault("event", "weir.x.y")
    kwargs.setdefault("resource", common_pb2.Resource(labels={"weir.resource.id": "r"}))
    return common_pb2.Event(**kwargs)


def test_missing_id_and_occurred_are_filled_and_received_is_cleared() -> None:
    original = _event()
    original.received.FromDatetime(NOW)
    (prepared,) = prepare([original], SETTINGS, clock)
    uuid.UUID(prepared.id)
    assert prepared.occurred.ToDatetime(tzinfo=UTC) == NOW
    assert not prepared.HasField("received")
    assert not original.id  # the request is not modified


def test_given_id_and_occurred_are_kept() -> None:
    given = _event(id="my-id")
    given.occurred.FromDatetime(datetime(2020, 1, 1, tzinfo=UTC))
    (prepared,) = prepare([given], SETTINGS, clock)
    assert prepared.id == "my-id"
    assert prepared.occurred.ToDatetime(tzinfo=UTC) == datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (_event(event=""), "events[1].event"),
        (_event(event="   "), "events[1].event"),
        (_event(event="x" * 300), "events[1].event"),
        (_event(resource=common_pb2.Resource()), "events[1].resource"),
        (_event(related=[common_pb2.Resource(labels={"weir.resource.role": "flow"})]), "events[1].related[0]"),
        (_event(id="x" * 37), "events[1].id"),
    ],
)
def test_invalid_events_name_their_field(bad, field) -> None:
    with pytest.raises(InvalidArgument) as info:
        prepare([_event(), bad], SETTINGS, clock)
    assert info.value.field == field
