"""weir._ids.new_id: random UUIDs in exactly the form str(uuid.uuid4()) has."""

from __future__ import annotations

import uuid

from weir._ids import new_id
from weir_kit.values import parse_id


def test_ids_are_canonical_version_4_uuids() -> None:
    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lowercase, canonical hyphens
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parse_id(value, "id") == value


def test_every_variant_digit_is_one_of_8_9_a_b() -> None:
    digits = {new_id()[19] for _ in range(2000)}
    assert digits == set("89ab")
