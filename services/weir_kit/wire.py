"""Protobuf wire format by hand, for the few fixed shapes on the hottest path.

A SyncRuns batch of 500 task runs emits 1,000 events. Built field by field
through the protobuf API and serialized, two events cost ~55 µs of the loop
per task run; most of it is map and ``Struct`` access in upb, per field.
Their bytes are mostly the same from one event to the next (the related
resources of a flow run, the labels and payload of a state type), so
:mod:`weir_orchestration.events` encodes the varying fields here and joins
them with cached bytes of the constant ones: ~18 µs for the same two events.

Only length-delimited fields, varints and the ``Struct``/``Value`` and
``map<string, string>`` layouts are covered. What is written parses back into
exactly the message the API would have built (``tests/unit/test_wire.py``
checks it against upb). The field order may differ from upb's own output;
every protobuf parser accepts any order, and a repeated or map field
written in two pieces is read back whole.
"""

from __future__ import annotations

from datetime import UTC, datetime

_ONE_BYTE = [bytes((n,)) for n in range(0x80)]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MASK = (1 << 64) - 1


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer."""
    if value < 0x80:
        if value < 0:
            raise ValueError("varint of a negative number")
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    """The key of field ``number`` (wire type 0 varint, 2 length-delimited)."""
    return varint(number << 3 | wire_type)


def delimited(key: bytes, body: bytes) -> bytes:
    """A length-delimited field: a submessage, bytes or a string already encoded."""
    size = len(body)
    return key + (_ONE_BYTE[size] if size < 0x80 else varint(size)) + body


def text(key: bytes, value: str) -> bytes:
    """A string field."""
    return delimited(key, value.encode())


# Keys of the fields below, by their messages' numbering.
_ENTRY_KEY = tag(1, 2)  # map entry key / Struct.fields / Resource.labels
_ENTRY_VALUE = tag(2, 2)  # map entry value
_VALUE_STRING = tag(3, 2)  # Value.string_value
_VALUE_STRUCT = tag(5, 2)  # Value.struct_value
_TS_SECONDS = tag(1, 0)
_TS_NANOS = tag(2, 0)

#: ``Value`` with ``null_value`` set (field 1, varint 0).
NULL_VALUE = tag(1, 0) + b"\x00"


def label(key: str, value: str) -> bytes:
    """One entry of a ``map<string, string>`` numbered 1 (``Resource.labels``)."""
    return delimited(_ENTRY_KEY, text(_ENTRY_KEY, key) + text(_ENTRY_VALUE, value))


def string_value(value: str) -> bytes:
    """The body of a ``google.protobuf.Value`` holding a string."""
    return text(_VALUE_STRING, value)


def struct_value(fields: bytes) -> bytes:
    """The body of a ``Value`` holding a ``Struct`` whose entries are ``fields`` (from :func:`entry`)."""
    return delimited(_VALUE_STRUCT, fields)


def entry(key: str, value: bytes) -> bytes:
    """One entry of ``Struct.fields``: ``key`` → the ``Value`` body ``value``."""
    return delimited(_ENTRY_KEY, text(_ENTRY_KEY, key) + delimited(_ENTRY_VALUE, value))


def timestamp(value: datetime) -> bytes:
    """The body of a ``google.protobuf.Timestamp`` for an aware datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} (give it a timezone)")
    delta = value - _EPOCH
    seconds, nanos = delta.days * 86400 + delta.seconds, delta.microseconds * 1000
    # int64: a time before 1970 is written as its 64-bit two's complement.
    return (_TS_SECONDS + varint(seconds & _INT64_MASK) if seconds else b"") + (
        _TS_NANOS + varint(nanos) if nanos else b""
    )
