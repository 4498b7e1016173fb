"""Small helpers the per-resource converters share."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.message import Message

from weir._proto import timestamp_to_datetime, to_timestamp
from weir.client.types import TimeRange
from weir.v1 import common_pb2


def ts(msg: Message, name: str) -> datetime | None:
    """The datetime of a Timestamp field, ``None`` when the field is unset."""
    return timestamp_to_datetime(getattr(msg, name)) if msg.HasField(name) else None


def set_ts(msg: Message, name: str, value: datetime | None) -> None:
    if value is not None:
        getattr(msg, name).CopyFrom(to_timestamp(value))


def opt(text: str) -> str | None:
    """Proto3 strings have no presence: ``""`` means unset."""
    return text or None


def time_range_to_proto(value: TimeRange | None) -> common_pb2.TimeRange | None:
    if value is None:
        return None
    msg = common_pb2.TimeRange()
    set_ts(msg, "after", value.after)
    set_ts(msg, "before", value.before)
    return msg


def set_time_range(msg: Message, name: str, value: TimeRange | None) -> None:
    converted = time_range_to_proto(value)
    if converted is not None:
        getattr(msg, name).CopyFrom(converted)


def page_request(page_size: int | None, page_token: str | None) -> common_pb2.PageRequest:
    return common_pb2.PageRequest(page_size=page_size or 0, page_token=page_token or "")


def range_field(msg: Message, name: str) -> TimeRange | None:
    """The TimeRange in field ``name``, ``None`` when the field is unset."""
    if not msg.HasField(name):
        return None
    field = getattr(msg, name)
    return TimeRange(after=ts(field, "after"), before=ts(field, "before"))
