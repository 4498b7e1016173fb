"""Protobuf helpers shared by the SDK, the gateway and the services.

The one place that knows how Weir's Python values travel in well-known
protobuf types:

* ``datetime`` (timezone-aware, UTC on the wire) <-> ``Timestamp``; an unset
  timestamp reads back as ``None``.
* ``dict`` <-> ``Struct`` and JSON values <-> ``Value``.

Only protobuf is imported here: ``import weir`` must stay light.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

__all__ = [
    "dict_to_struct",
    "struct_to_dict",
    "timestamp_to_datetime",
    "to_timestamp",
    "to_value",
    "value_to_python",
]

# Integers above this do not survive a trip through a double.
_MAX_SAFE_INT = 2**53
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A ``Timestamp`` for an aware datetime (``None`` stays ``None``).

    Naive datetimes are refused: in a scheduler they are bugs waiting to fire
    at the wrong hour.
    """
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} (give it a timezone)")
    # By hand: protobuf's FromDatetime goes through utctimetuple and timegm, several times slower,
    # and the services stamp thousands of events per SyncRuns batch.
    delta = value - _EPOCH
    return timestamp_pb2.Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def timestamp_to_datetime(ts: timestamp_pb2.Timestamp | None) -> datetime | None:
    """The aware UTC datetime of a ``Timestamp``; ``None`` when it is unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def dict_to_struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    """A ``Struct`` holding a JSON-like mapping (``None`` gives an empty one)."""
    struct = struct_pb2.Struct()
    if value:
        struct.update(dict(value))
    return struct


def struct_to_dict(struct: struct_pb2.Struct | None) -> dict[str, Any]:
    """The plain dict of a ``Struct``; integral numbers come back as ``int``."""
    if struct is None or not struct.fields:  # most are empty: skip the map's Python-level items()
        return {}
    return {key: value_to_python(item) for key, item in struct.fields.items()}


def to_value(value: Any) -> struct_pb2.Value:
    """A ``Value`` for any JSON value (None, bool, number, str, list, dict)."""
    out = struct_pb2.Value()
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int | float):
        out.number_value = float(value)
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, Mapping):
        out.struct_value.CopyFrom(dict_to_struct(value))
    elif isinstance(value, list | tuple):
        out.list_value.values.extend(to_value(item) for item in value)
    else:
        raise TypeError(f"{type(value).__name__} is not a JSON value")
    return out


def value_to_python(value: struct_pb2.Value | None) -> Any:
    """The Python value of a ``Value`` (an unset ``Value`` is ``None``)."""
    if value is None:
        return None
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        number = value.number_value
        # Struct numbers are doubles; hand back the int a user wrote
        # (`{"n": 3}` must not come back as 3.0).
        if number.is_integer() and abs(number) <= _MAX_SAFE_INT:
            return int(number)
        return number
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [value_to_python(item) for item in value.list_value.values]
    return getattr(value, kind)
