"""Events as table rows and back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from math import isfinite
from typing import Any

from google.protobuf.struct_pb2 import Struct, Value

from weir._proto import to_timestamp
from weir.v1 import common_pb2
from weir_events.filters import timestamp_to_datetime
from weir_events.models import ID, PRIMARY_ROLE
from weir_kit.events import RESOURCE_ID, RESOURCE_ROLE


def invalid_reason(event: common_pb2.Event) -> str | None:
    """Why an event cannot be stored, or None when it can."""
    if not event.id or len(event.id) > ID:
        return f"id must be 1 to {ID} characters"
    if not event.event:
        return "event name is empty"
    if not event.resource.labels.get(RESOURCE_ID):
        return f"resource has no {RESOURCE_ID} label"
    if not event.HasField("occurred"):
        return "occurred is not set"
    return None


def payload_dict(payload: Struct) -> dict[str, Any]:
    """The JSON object of an event's payload as ``json_format.MessageToDict`` gives it (every number
    a float, NaN and infinity refused), so stored payloads stay as they were, in half its time:
    the persister converts one per event. Not ``weir._proto.struct_to_dict``: it turns 3.0 into 3."""
    fields = payload.fields
    return {key: _json_value(fields[key]) for key in fields}  # .items() is a slow Python view


def _json_value(value: Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return payload_dict(value.struct_value)
    if kind == "number_value":
        number = value.number_value
        if not isfinite(number):
            raise ValueError(f"payload number {number} is not JSON")
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "list_value":
        return [_json_value(item) for item in value.list_value.values]
    return None  # null_value, or no kind set


def _labels(resource: common_pb2.Resource) -> dict[str, str]:
    labels = resource.labels
    return {key: labels[key] for key in labels}  # dict(labels) goes through the Mapping mixins: twice as slow


def event_row(event: common_pb2.Event, received: datetime) -> dict[str, Any]:
    resource = _labels(event.resource)
    return {
        "id": event.id,
        "occurred": timestamp_to_datetime(event.occurred),
        "event": event.event,
        "resource_id": resource[RESOURCE_ID],
        "resource": resource,
        "related": [_labels(r) for r in event.related],
        "payload": payload_dict(event.payload) if event.HasField("payload") else {},
        "follows": event.follows or None,
        "received": received,
    }


def resource_rows(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``event_resources`` rows of an ``events`` row: one per distinct (resource id, role)
    the event is about or related to."""
    keys = {(row["resource_id"], PRIMARY_ROLE): None}
    for related in row["related"]:
        resource_id = related.get(RESOURCE_ID)
        if resource_id:
            keys[(resource_id, related.get(RESOURCE_ROLE, ""))] = None
    event_id, occurred = row["id"], row["occurred"]
    return [{"event_id": event_id, "resource_id": rid, "role": role, "occurred": occurred} for rid, role in keys]


def event_from_row(row: Any) -> common_pb2.Event:
    message = common_pb2.Event(
        id=row.id,
        event=row.event,
        resource=common_pb2.Resource(labels=row.resource),
        related=[common_pb2.Resource(labels=r) for r in row.related],
        follows=row.follows or "",
    )
    message.occurred.CopyFrom(to_timestamp(row.occurred))
    message.received.CopyFrom(to_timestamp(row.received))
    if row.payload:
        payload = Struct()
        payload.update(row.payload)
        message.payload.CopyFrom(payload)
    return message
