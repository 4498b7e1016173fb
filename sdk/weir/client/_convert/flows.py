"""Flows and their filter."""

from __future__ import annotations

from weir.client._convert._common import set_ts, ts
from weir.client.types import Flow, FlowFilter
from weir.v1 import orchestration_pb2


def flow_from_proto(msg: orchestration_pb2.Flow) -> Flow:
    return Flow(
        id=msg.id,
        name=msg.name,
        tags=tuple(msg.tags),
        created=ts(msg, "created"),
        updated=ts(msg, "updated"),
    )


def flow_to_proto(value: Flow) -> orchestration_pb2.Flow:
    msg = orchestration_pb2.Flow(id=value.id, name=value.name, tags=value.tags)
    set_ts(msg, "created", value.created)
    set_ts(msg, "updated", value.updated)
    return msg


def flow_filter_to_proto(value: FlowFilter | None) -> orchestration_pb2.FlowFilter:
    value = value or FlowFilter()
    return orchestration_pb2.FlowFilter(name_like=value.name_like or "", names=value.names, tags_all=value.tags_all)


def flow_filter_from_proto(msg: orchestration_pb2.FlowFilter) -> FlowFilter:
    return FlowFilter(name_like=msg.name_like or None, names=tuple(msg.names), tags_all=tuple(msg.tags_all))
