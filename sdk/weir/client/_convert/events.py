"""Events and the event filter."""

from __future__ import annotations

from weir._proto import dict_to_struct, struct_to_dict
from weir.client._convert._common import opt, range_field, set_time_range, set_ts, ts
from weir.client.types import Event, EventFilter
from weir.v1 import common_pb2, events_pb2


def event_from_proto(msg: common_pb2.Event) -> Event:
    occurred = ts(msg, "occurred")
    if occurred is None:
        raise ValueError(f"event {msg.id} has no occurred time")
    return Event(
        id=msg.id,
        occurred=occurred,
        event=msg.event,
        resource=dict(msg.resource.labels),
        related=tuple(dict(r.labels) for r in msg.related),
        payload=struct_to_dict(msg.payload),
        follows=opt(msg.follows),
        received=ts(msg, "received"),
    )


def event_to_proto(value: Event) -> common_pb2.Event:
    msg = common_pb2.Event(
        id=value.id,
        event=value.event,
        resource=common_pb2.Resource(labels=value.resource),
        related=[common_pb2.Resource(labels=r) for r in value.related],
        payload=dict_to_struct(value.payload),
        follows=value.follows or "",
    )
    set_ts(msg, "occurred", value.occurred)
    set_ts(msg, "received", value.received)
    return msg


def event_filter_to_proto(value: EventFilter | None) -> events_pb2.EventFilter:
    value = value or EventFilter()
    msg = events_pb2.EventFilter(event_prefixes=value.event_prefixes, resource_ids=value.resource_ids)
    set_time_range(msg, "occurred", value.occurred)
    return msg


def event_filter_from_proto(msg: events_pb2.EventFilter) -> EventFilter:
    return EventFilter(
        event_prefixes=tuple(msg.event_prefixes),
        resource_ids=tuple(msg.resource_ids),
        occurred=range_field(msg, "occurred"),
    )
