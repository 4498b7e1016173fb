"""Run-history buckets."""

from __future__ import annotations

from weir.client._convert._common import opt, set_ts, ts
from weir.client._convert.states import state_type_from_proto, state_type_to_proto
from weir.client.types import HistoryBucket, StateCount
from weir.v1 import orchestration_pb2


def bucket_from_proto(msg: orchestration_pb2.HistoryBucket) -> HistoryBucket:
    return HistoryBucket(
        start=ts(msg, "start"),
        end=ts(msg, "end"),
        states=tuple(
            StateCount(type=state_type_from_proto(s.type), name=opt(s.name), count=s.count) for s in msg.states
        ),
    )


def bucket_to_proto(value: HistoryBucket) -> orchestration_pb2.HistoryBucket:
    msg = orchestration_pb2.HistoryBucket(
        states=[
            orchestration_pb2.StateCount(type=state_type_to_proto(s.type), name=s.name or "", count=s.count)
            for s in value.states
        ]
    )
    set_ts(msg, "start", value.start)
    set_ts(msg, "end", value.end)
    return msg
