"""What ``deploy`` sends, built without a server: parameter schema, entrypoint, schedules, retries."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from weir import flow
from weir.client.types import CollisionStrategy, Schedule
from weir.deployments import build_deployment, parameter_schema
from weir.errors import InvalidArgument


class Window(BaseModel):
    start: date
    days: int = 1


class Opaque:
    """Not something pydantic can describe."""


@flow(retries=2, retry_delay_seconds=[1, 5], version="7", description="loads things")
def load(day: date, window: Window, limit: int = 10, mode="fast", blob: Opaque = Opaque(), *rest: int) -> int:
    return limit


@flow
def open_ended(n: int, **extra: str) -> None: ...


def test_parameter_schema_from_the_signature() -> None:
    schema = parameter_schema(load)
    assert schema["title"] == "load"
    assert schema["type"] == "object"
    props = schema["properties"]
    assert list(props) == ["day", "window", "limit", "mode", "blob"]  # *rest is left out
    assert props["day"] == {"format": "date", "title": "Day", "type": "string"}
    assert props["window"] == {"$ref": "#/$defs/Window"}
    assert schema["$defs"]["Window"]["required"] == ["start"]
    assert props["limit"] == {"default": 10, "title": "Limit", "type": "integer"}
    assert props["mode"] == {"default": "fast", "title": "Mode"}
    # An undescribable type is left open, and a default that is not JSON is left out.
    assert props["blob"] == {"title": "Blob"}
    assert schema["required"] == ["day", "window"]
    assert schema["additionalProperties"] is False


def test_var_keyword_flows_accept_more_properties() -> None:
    schema = parameter_schema(open_ended)
    assert schema["additionalProperties"] == {"type": "string"}
    assert schema["required"] == ["n"]


def test_draft_takes_retries_version_and_description_from_the_flow() -> None:
    draft = build_deployment(load, name="daily", work_pool_name="local")
    assert draft.id is None
    assert draft.full_name == "load/daily"
    assert draft.retries == 2
    assert draft.retry_delay_seconds == (1.0, 5.0)
    assert draft.version == "7"
    assert draft.description == "loads things"
    assert draft.parameters == {}  # the flow's defaults live in the schema
    assert draft.parameter_schema == parameter_schema(load)
    assert draft.collision_strategy is CollisionStrategy.ENQUEUE


def test_draft_entrypoint_is_relative_to_the_working_directory() -> None:
    here = Path(__file__).resolve()
    root = here.parents[2]
    draft = build_deployment(load, name="d", work_pool_name="p", working_directory=str(root))
    assert draft.entrypoint == f"{here.relative_to(root).as_posix()}:load"
    assert draft.working_directory == str(root)
    default = build_deployment(load, name="d", work_pool_name="p")
    assert default.working_directory == os.getcwd()
    explicit = build_deployment(load, name="d", work_pool_name="p", entrypoint="pkg.mod:load")
    assert explicit.entrypoint == "pkg.mod:load"


def test_draft_schedules_and_parameters() -> None:
    draft = build_deployment(
        load,
        name="d",
        work_pool_name="p",
        cron="0 3 * * *",
        interval=timedelta(hours=2),
        rrule="FREQ=WEEKLY",
        timezone="Europe/Paris",
        schedules=[Schedule.every(60)],
        parameters={"day": date(2025, 1, 2), "limit": 3},
        collision_strategy="cancel_new",
        tags=["a", "b"],
    )
    assert [s.cron or s.rrule or s.interval for s in draft.schedules] == [
        "0 3 * * *",
        timedelta(hours=2),
        "FREQ=WEEKLY",
        timedelta(seconds=60),
    ]
    assert {s.timezone for s in draft.schedules[:3]} == {"Europe/Paris"}
    assert draft.parameters == {"day": "2025-01-02", "limit": 3}
    assert draft.collision_strategy is CollisionStrategy.CANCEL_NEW
    assert draft.tags == ("a", "b")


def test_unknown_parameter_is_refused_with_its_field() -> None:
    with pytest.raises(InvalidArgument, match="no parameter 'limt'") as info:
        build_deployment(load, name="d", work_pool_name="p", parameters={"limt": 3})
    assert info.value.field == "parameters.limt"
    # A flow with **kwargs takes any name.
    assert build_deployment(open_ended, name="d", work_pool_name="p", parameters={"x": "y"}).parameters == {"x": "y"}


def test_bad_collision_strategy_and_interval() -> None:
    with pytest.raises(InvalidArgument, match="collision_strategy 'later'"):
        build_deployment(load, name="d", work_pool_name="p", collision_strategy="later")
    with pytest.raises(InvalidArgument, match="interval must be positive") as info:
        build_deployment(load, name="d", work_pool_name="p", interval=0)
    assert info.value.field == "interval"
