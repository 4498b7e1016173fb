"""Log records and the log filter."""

from __future__ import annotations

from weir.client._convert._common import opt, range_field, set_time_range, set_ts, ts
from weir.client.types import LogFilter, LogRecord
from weir.v1 import orchestration_pb2


def log_from_proto(msg: orchestration_pb2.LogRecord) -> LogRecord:
    return LogRecord(
        id=opt(msg.id),
        flow_run_id=msg.flow_run_id,
        task_run_id=opt(msg.task_run_id),
        name=msg.name,
        level=msg.level,
        message=msg.message,
        timestamp=ts(msg, "timestamp"),
    )


def log_to_proto(value: LogRecord) -> orchestration_pb2.LogRecord:
    msg = orchestration_pb2.LogRecord(
        id=value.id or "",
        flow_run_id=value.flow_run_id,
        task_run_id=value.task_run_id or "",
        name=value.name,
        level=value.level,
        message=value.message,
    )
    set_ts(msg, "timestamp", value.timestamp)
    return msg


def log_filter_to_proto(value: LogFilter | None) -> orchestration_pb2.LogFilter:
    value = value or LogFilter()
    msg = orchestration_pb2.LogFilter(
        flow_run_id=value.flow_run_id or "",
        task_run_id=value.task_run_id or "",
        level_ge=value.level_ge,
        text_like=value.text_like or "",
    )
    set_time_range(msg, "timestamp", value.timestamp)
    return msg


def log_filter_from_proto(msg: orchestration_pb2.LogFilter) -> LogFilter:
    return LogFilter(
        flow_run_id=opt(msg.flow_run_id),
        task_run_id=opt(msg.task_run_id),
        level_ge=msg.level_ge,
        timestamp=range_field(msg, "timestamp"),
        text_like=opt(msg.text_like),
    )
