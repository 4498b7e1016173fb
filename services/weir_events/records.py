"""Events as table rows and back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

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


def event_row(event: common_pb2.Event, received: datetime) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred": timestamp_to_datetime(event.occurred),
        "event": event.event,
        "resource_id": event.resource.labels[RESOURCE_ID],
        "resource": dict(event.resource.labels),
        "related": [dict(r.labels) for r in event.related],
        "payload": json_format.MessageToDict(event.payload) if event.HasField("payload") else {},
        "follows": event.follows or None,
        "received": received,
    }


def resource_rows(event: common_pb2.Event) -> list[dict[str, Any]]:
    """One row per distinct (resource id, role) the event is about or related to."""
    occurred = timestamp_to_datetime(event.occurred)
    keys = {(event.resource.labels[RESOURCE_ID], PRIMARY_ROLE): None}
    for related in event.related:
        resource_id = related.labels.get(RESOURCE_ID)
        if resource_id:
            keys[(resource_id, related.labels.get(RESOURCE_ROLE, ""))] = None
    return [{"event_id": event.id, "resource_id": rid, "role": role, "occurred": occurred} for rid, role in keys]


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
