"""weir_kit.values.parse_id: ids come back canonical, whatever form a client sent."""

from __future__ import annotations

import uuid

import pytest

from weir.errors import InvalidArgument
from weir_kit.values import parse_id

ID = "0b5f6c9e-3d1a-4e8f-9a2b-7c4d5e6f7a8b"


@pytest.mark.parametrize("given", [ID, ID.upper(), ID.replace("-", ""), "{" + ID + "}", "urn:uuid:" + ID])
def test_every_form_uuid_accepts_comes_back_canonical(given: str) -> None:
    assert parse_id(given, "id") == ID == str(uuid.UUID(given))


@pytest.mark.parametrize("given", ["nope", ID[:-1], ID + "0", ID + "\n", " " + ID, ID.replace("-", "_")])
def test_anything_else_is_invalid_argument_naming_the_field(given: str) -> None:
    with pytest.raises(InvalidArgument, match="flow_run_id is not a UUID") as err:
        parse_id(given, "flow_run_id")
    assert err.value.field == "flow_run_id"


def test_empty_is_required_or_allowed() -> None:
    assert parse_id("", "id", required=False) == ""
    with pytest.raises(InvalidArgument, match="id is required"):
        parse_id("", "id")
