"""Building wire states on the hot path, and user-facing states from them."""

from __future__ import annotations

import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from weir._ids import new_id
from weir.client._convert.states import state_from_proto
from weir.client.types import State
from weir.v1 import common_pb2

SCHEDULED = common_pb2.SCHEDULED
PENDING = common_pb2.PENDING
RUNNING = common_pb2.RUNNING
COMPLETED = common_pb2.COMPLETED
FAILED = common_pb2.FAILED
CRASHED = common_pb2.CRASHED
CANCELLED = common_pb2.CANCELLED


def now_ts() -> Timestamp:
    ts = Timestamp()
    ns = time.time_ns()
    ts.seconds, ts.nanos = divmod(ns, 1_000_000_000)
    return ts


def new_state(type_: int, name: str = "", message: str = "", **details: Any) -> common_pb2.State:
    state = common_pb2.State(id=new_id(), type=type_, name=name, message=message, timestamp=now_ts())  # type: ignore[arg-type]
    if details:
        for key, value in details.items():
            if value is None:
                continue
            if key in ("scheduled_time", "cache_expiration"):
                getattr(state.details, key).FromDatetime(value)
            else:
                setattr(state.details, key, value)
    return state


def to_user_state(state: common_pb2.State, value: Any = None, exception: BaseException | None = None) -> State:
    return state_from_proto(state).with_result(value, exception)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
