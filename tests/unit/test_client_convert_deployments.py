"""Deployments, schedules, pools, queues, workers: proto <-> SDK type round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from weir.client._convert import deployments as dp
from weir.client.types import (
    CollisionStrategy,
    Deployment,
    JobVariablesCheck,
    Schedule,
    Worker,
    WorkPool,
    WorkQueue,
)
from weir.v1 import deployments_pb2 as pb

T0 = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)

SCHEDULES = (
    Schedule(id="s1", interval=timedelta(minutes=90), anchor=T0, timezone="Europe/Paris"),
    Schedule(id="s2", cron="0 6 * * mon-fri", timezone="America/New_York", active=False),
    Schedule(id="s3", rrule="FREQ=WEEKLY;BYDAY=MO,WE"),
)

DEPLOYMENT = Deployment(
    id="0b4d2f0e-0000-4000-8000-000000000001",
    flow_name="etl",
    name="nightly",
    version="1.2",
    description="the nightly load",
    tags=("prod", "db"),
    entrypoint="flows/etl.py:etl",
    working_directory="/srv/project",
    parameters={"day": "mon", "limit": 3, "nested": {"xs": [1, 2.5, None, True]}},
    parameter_schema={"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]},
    job_variables={"env": {"A": "1"}},
    work_pool_name="local",
    work_queue_name="high",
    schedules=SCHEDULES,
    paused=True,
    concurrency_limit=2,
    collision_strategy=CollisionStrategy.CANCEL_NEW,
    retries=3,
    retry_delay_seconds=(1.0, 10.0, 60.5),
    created=T0,
    updated=T1,
)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["interval", "cron", "rrule"])
def test_schedule_round_trip(schedule: Schedule) -> None:
    assert dp.schedule_from_proto(dp.schedule_to_proto(schedule)) == schedule


def test_schedule_sets_the_oneof_it_has() -> None:
    assert dp.schedule_to_proto(Schedule.every(30)).WhichOneof("kind") == "interval_seconds"
    assert dp.schedule_to_proto(Schedule.every(30)).interval_seconds == 30.0
    assert dp.schedule_to_proto(Schedule.from_cron("* * * * *")).WhichOneof("kind") == "cron"
    assert dp.schedule_to_proto(Schedule.from_rrule("FREQ=DAILY")).WhichOneof("kind") == "rrule"


def test_schedule_helpers() -> None:
    assert Schedule.every(timedelta(hours=1), anchor=T0) == Schedule(interval=timedelta(hours=1), anchor=T0)
    assert Schedule.every(2.5).interval == timedelta(seconds=2.5)
    assert Schedule.from_cron("0 3 * * *", timezone="Asia/Tokyo").timezone == "Asia/Tokyo"
    assert Schedule.from_rrule("FREQ=DAILY").active is True


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"cron": "* * * * *", "rrule": "FREQ=DAILY"}, {"interval": timedelta(0)}, {"interval": timedelta(-1)}],
)
def test_schedule_needs_exactly_one_positive_kind(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_empty_schedule_timezone_reads_as_utc() -> None:
    assert dp.schedule_from_proto(pb.Schedule(cron="* * * * *")).timezone == "UTC"


def test_deployment_round_trip() -> None:
    assert dp.deployment_from_proto(dp.deployment_to_proto(DEPLOYMENT)) == DEPLOYMENT
    assert DEPLOYMENT.full_name == "etl/nightly"


def test_minimal_deployment_round_trip_keeps_unset_as_none() -> None:
    draft = Deployment(flow_name="etl", name="adhoc")
    back = dp.deployment_from_proto(dp.deployment_to_proto(draft))
    assert back == draft
    assert back.id is None and back.entrypoint is None and back.work_queue_name is None
    assert back.collision_strategy is CollisionStrategy.ENQUEUE


def test_unspecified_collision_strategy_is_enqueue() -> None:
    msg = pb.Deployment(flow_name="f", name="d", collision_strategy=pb.COLLISION_STRATEGY_UNSPECIFIED)
    assert dp.deployment_from_proto(msg).collision_strategy is CollisionStrategy.ENQUEUE
    assert dp.collision_to_proto(CollisionStrategy.CANCEL_NEW) == pb.CANCEL_NEW


def test_work_pool_round_trip() -> None:
    pool = WorkPool(
        id="p1",
        name="local",
        type="process",
        base_job_template={
            "job_configuration": {"env": "{{ env }}"},
            "variables": {"type": "object", "properties": {"env": {"type": "object", "default": {}}}},
        },
        paused=True,
        concurrency_limit=4,
        default_queue_name="default",
        description="laptop",
        created=T0,
        updated=T1,
    )
    assert dp.work_pool_from_proto(dp.work_pool_to_proto(pool)) == pool
    minimal = WorkPool(name="p")
    assert dp.work_pool_from_proto(dp.work_pool_to_proto(minimal)) == minimal


def test_work_queue_round_trip() -> None:
    queue = WorkQueue(
        id="q1",
        work_pool_name="local",
        name="high",
        priority=0,
        concurrency_limit=1,
        paused=True,
        description="urgent",
        created=T0,
    )
    assert dp.work_queue_from_proto(dp.work_queue_to_proto(queue)) == queue
    minimal = WorkQueue(work_pool_name="local", name="default")
    assert dp.work_queue_from_proto(dp.work_queue_to_proto(minimal)) == minimal


def test_worker_round_trip() -> None:
    worker = Worker(
        id="w1",
        name="box-1",
        work_pool_name="local",
        status="ONLINE",
        last_heartbeat=T1,
        free_slots=3,
        work_queue_names=("default", "high"),
        active_flow_run_ids=("r1", "r2"),
        labels={"zone": "eu", "gpu": "no"},
    )
    assert dp.worker_from_proto(dp.worker_to_proto(worker)) == worker


@pytest.mark.parametrize(
    "check",
    [
        JobVariablesCheck(valid=True),
        JobVariablesCheck(valid=False, layer="deployment", field="env.A", message="1 is not of type 'string'"),
    ],
)
def test_job_variables_check_round_trip(check: JobVariablesCheck) -> None:
    assert dp.check_from_proto(dp.check_to_proto(check)) == check


def test_types_serialise_to_json() -> None:
    data = DEPLOYMENT.model_dump(mode="json")
    assert data["schedules"][1]["cron"] == "0 6 * * mon-fri"
    assert data["collision_strategy"] == "CANCEL_NEW"
    assert Deployment.model_validate(data) == DEPLOYMENT
