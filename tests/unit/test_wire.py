"""weir_kit.wire writes what upb writes for the same values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from weir.v1 import common_pb2
from weir_kit import wire


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_is_what_upb_writes_for_a_uint64(value: int) -> None:
    # Timestamp.seconds is field 1: its encoding is the key byte 0x08 and the varint.
    msg = timestamp_pb2.Timestamp(seconds=value if value < 2**63 else value - 2**64)
    assert msg.SerializeToString() == (b"\x08" + wire.varint(value) if value else b"")


def test_varint_of_a_negative_number_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        wire.varint(-1)


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))])))
def test_timestamp_parses_to_the_same_instant(value: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    assert timestamp_pb2.Timestamp.FromString(wire.timestamp(value)) == expected


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        wire.timestamp(datetime(2026, 1, 1))  # noqa: DTZ001


@given(st.dictionaries(st.text(), st.text(max_size=200), max_size=5))
def test_labels_are_a_resource_s_map(labels: dict[str, str]) -> None:
    body = b"".join(wire.label(k, v) for k, v in labels.items())
    assert common_pb2.Resource.FromString(body) == common_pb2.Resource(labels=labels)


@given(st.dictionaries(st.text(), st.one_of(st.none(), st.text(max_size=200)), max_size=5))
def test_struct_entries_are_a_struct(values: dict[str, str | None]) -> None:
    def value(v: str | None) -> bytes:
        return wire.NULL_VALUE if v is None else wire.string_value(v)

    fields = b"".join(wire.entry(k, value(v)) for k, v in values.items())
    nested = struct_pb2.Value.FromString(wire.struct_value(fields))
    expected = struct_pb2.Struct()
    expected.update(values)
    assert nested.struct_value == expected
