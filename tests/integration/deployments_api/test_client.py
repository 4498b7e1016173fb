"""The typed client's DeploymentService methods against a real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.deployments_api.conftest import unique
from weir.client.types import CollisionStrategy, Deployment, Schedule, StateType
from weir.errors import FailedPrecondition, InvalidArgument, NotFound

ANCHOR = datetime(2025, 1, 1, tzinfo=UTC)

SCHEMA = {
    "title": "etl",
    "type": "object",
    "properties": {"day": {"type": "string"}, "limit": {"type": "integer", "default": 10}},
    "required": ["day"],
}


def make_deployment(client: Any, pool: str, **overrides: Any) -> Deployment:
    values: dict[str, Any] = {
        "flow_name": unique("flow"),
        "name": "nightly",
        "entrypoint": "flows/etl.py:etl",
        "working_directory": "/srv/project",
        "parameters": {"day": "mon"},
        "parameter_schema": SCHEMA,
        "work_pool_name": pool,
        "tags": ("prod", "db"),
        **overrides,
    }
    return client.upsert_deployment(**values)


# ---------------------------------------------------------------- pools


def test_work_pool_lifecycle(client: Any) -> None:
    name = unique("pool")
    pool = client.upsert_work_pool(name, concurrency_limit=3, description="first")
    assert (pool.name, pool.type, pool.concurrency_limit, pool.description) == (name, "process", 3, "first")
    assert pool.default_queue_name == "default"
    assert pool.id and pool.created is not None
    assert client.read_work_pool(name) == pool
    assert name in [p.name for p in client.iter_work_pools()]

    # Upserting again replaces the settings and keeps the identity.
    again = client.upsert_work_pool(name, concurrency_limit=0, description="second")
    assert (again.id, again.concurrency_limit, again.description) == (pool.id, 0, "second")

    assert client.pause_work_pool(name).paused is True
    assert client.read_work_pool(name).paused is True
    assert client.resume_work_pool(name).paused is False

    client.delete_work_pool(name)
    with pytest.raises(NotFound):
        client.read_work_pool(name)


def test_a_pool_always_has_a_default_queue(client: Any, pool: str) -> None:
    queues = client.list_work_queues(pool).items
    assert [q.name for q in queues] == ["default"]
    assert queues[0].work_pool_name == pool


def test_work_queue_lifecycle(client: Any, pool: str) -> None:
    queue = client.upsert_work_queue(pool, "high", priority=3, concurrency_limit=2, description="urgent")
    assert (queue.work_pool_name, queue.name, queue.priority, queue.concurrency_limit) == (pool, "high", 3, 2)
    assert client.read_work_queue(pool, "high") == queue
    assert {q.name for q in client.iter_work_queues(pool)} == {"default", "high"}

    assert client.pause_work_queue(pool, "high").paused is True
    assert client.resume_work_queue(pool, "high").paused is False
    assert client.upsert_work_queue(pool, "high", priority=5).priority == 5

    client.delete_work_queue(pool, "high")
    with pytest.raises(NotFound):
        client.read_work_queue(pool, "high")


def test_missing_pool_and_queue_are_not_found(client: Any) -> None:
    with pytest.raises(NotFound):
        client.read_work_pool(unique("nope"))
    with pytest.raises(NotFound):
        client.list_work_queues(unique("nope"))
    with pytest.raises(NotFound):
        client.read_work_queue(unique("nope"), "default")


def test_list_workers_of_a_pool_without_workers(client: Any, pool: str) -> None:
    assert client.list_workers(pool).items == []
    assert isinstance(client.list_workers().items, list)


# ---------------------------------------------------------- deployments


def test_deployment_round_trip_and_idempotent_upsert(client: Any, pool: str) -> None:
    client.upsert_work_queue(pool, "high")
    schedules = (
        Schedule.from_cron("0 3 * * *", timezone="Europe/Paris"),
        Schedule.every(timedelta(hours=2), anchor=ANCHOR),
        Schedule(rrule="FREQ=WEEKLY;BYDAY=MO", active=False),
    )
    d = make_deployment(
        client,
        pool,
        work_queue_name="high",
        job_variables={"env": {"A": "1"}},
        schedules=schedules,
        version="1.2",
        description="the nightly load",
        paused=True,
        concurrency_limit=2,
        collision_strategy=CollisionStrategy.CANCEL_NEW,
        retries=2,
        retry_delay_seconds=(1.0, 30.0),
    )
    assert d.id and d.full_name.endswith("/nightly")
    assert d.parameters == {"day": "mon"}
    assert d.parameter_schema == SCHEMA
    assert d.job_variables == {"env": {"A": "1"}}
    assert (d.work_pool_name, d.work_queue_name, d.paused, d.concurrency_limit) == (pool, "high", True, 2)
    assert d.collision_strategy is CollisionStrategy.CANCEL_NEW
    assert (d.retries, d.retry_delay_seconds, set(d.tags)) == (2, (1.0, 30.0), {"prod", "db"})
    assert [(s.cron, s.interval, s.rrule, s.timezone, s.active) for s in d.schedules] == [
        ("0 3 * * *", None, None, "Europe/Paris", True),
        (None, timedelta(hours=2), None, "UTC", True),
        (None, None, "FREQ=WEEKLY;BYDAY=MO", "UTC", False),
    ]
    assert d.schedules[1].anchor == ANCHOR
    assert all(s.id for s in d.schedules)

    assert client.read_deployment(d.id) == d
    assert client.read_deployment(name=d.full_name) == d

    # The same upsert again: same deployment, no second row.
    again = make_deployment(client, pool, flow_name=d.flow_name, paused=False)
    assert again.id == d.id
    assert again.schedules == ()
    assert [x.id for x in client.iter_deployments(flow_name=d.flow_name)] == [d.id]


def test_list_deployments_filters_and_pages(client: Any, pool: str) -> None:
    flow_name = unique("flow")
    first = make_deployment(client, pool, flow_name=flow_name, name="alpha", tags=("a", "b"))
    second = make_deployment(client, pool, flow_name=flow_name, name="beta", tags=("a",))
    other = make_deployment(client, pool, name="gamma")

    def ids(**filters: Any) -> set[str]:
        return {d.id for d in client.iter_deployments(**filters)}

    assert ids(flow_name=flow_name) == {first.id, second.id}
    assert ids(work_pool_name=pool) == {first.id, second.id, other.id}
    assert ids(work_pool_name=pool, tags_all=("a", "b")) == {first.id}
    assert ids(flow_name=flow_name, name_like="bet") == {second.id}
    page = client.list_deployments(work_pool_name=pool, page_size=2)
    assert len(page.items) == 2 and page.next_page_token
    assert ids(work_pool_name=pool, page_size=1) == {first.id, second.id, other.id}


def test_pause_resume_and_delete(client: Any, pool: str) -> None:
    d = make_deployment(client, pool)
    assert client.pause_deployment(d.id).paused is True
    assert client.read_deployment(d.id).paused is True
    assert client.resume_deployment(d.id).paused is False
    client.delete_deployment(d.id)
    with pytest.raises(NotFound):
        client.read_deployment(d.id)
    with pytest.raises(NotFound):
        client.read_deployment(name=d.full_name)


def test_invalid_schedule_names_its_field(client: Any, pool: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        make_deployment(client, pool, schedules=[Schedule.every(60), Schedule.from_cron("not a cron")])
    assert info.value.field == "deployment.schedules[1].cron"
    with pytest.raises(InvalidArgument) as info:
        make_deployment(client, pool, schedules=[Schedule.from_cron("0 3 * * *", timezone="Mars/Olympus")])
    assert info.value.field == "deployment.schedules[0].timezone"


def test_read_deployment_needs_an_id_or_a_name(client: Any) -> None:
    with pytest.raises(InvalidArgument):
        client.read_deployment()
    with pytest.raises(NotFound):
        client.read_deployment(name=f"{unique('flow')}/none")


# ---------------------------------------------------------------- runs


def test_create_flow_run_from_deployment(client: Any, pool: str) -> None:
    d = make_deployment(client, pool, tags=("prod",))
    when = datetime.now(UTC) + timedelta(hours=1)
    run_id = client.create_flow_run_from_deployment(
        d.id, parameters={"limit": 3}, tags=["manual"], scheduled_time=when, name="by-hand"
    )
    run = client.read_flow_run(run_id)
    assert run.deployment_id == d.id
    assert run.flow_name == d.flow_name
    assert run.name == "by-hand"
    assert run.parameters == {"day": "mon", "limit": 3}  # the deployment's defaults under the run's own
    assert {"prod", "manual"} <= set(run.tags)
    assert run.state is not None and run.state.type is StateType.SCHEDULED
    assert run.state.details.scheduled_time == when


def test_idempotency_key_returns_the_first_run(client: Any, pool: str) -> None:
    d = make_deployment(client, pool)
    key = unique("key")
    first = client.create_flow_run_from_deployment(d.id, idempotency_key=key)
    assert client.create_flow_run_from_deployment(d.id, idempotency_key=key) == first
    assert client.create_flow_run_from_deployment(d.id) != first


def test_paused_deployment_or_pool_refuses_runs(client: Any, pool: str) -> None:
    d = make_deployment(client, pool)
    client.pause_deployment(d.id)
    with pytest.raises(FailedPrecondition):
        client.create_flow_run_from_deployment(d.id)
    client.resume_deployment(d.id)
    client.pause_work_pool(pool)
    with pytest.raises(FailedPrecondition):
        client.create_flow_run_from_deployment(d.id)
    client.resume_work_pool(pool)
    assert client.create_flow_run_from_deployment(d.id)


def test_bad_parameters_name_the_field(client: Any, pool: str) -> None:
    d = make_deployment(client, pool)
    with pytest.raises(InvalidArgument) as info:
        client.create_flow_run_from_deployment(d.id, parameters={"limit": "many"})
    assert info.value.field is not None and "limit" in info.value.field


def test_validate_job_variables(client: Any, pool: str) -> None:
    d = make_deployment(client, pool, job_variables={"env": {"A": "1"}})
    assert client.validate_job_variables(deployment_id=d.id).valid is True
    bad = client.validate_job_variables(deployment_id=d.id, job_variables={"env": {"B": 2}})
    assert bad.valid is False
    assert bad.layer and bad.message
    assert bad.field and "env" in bad.field
    draft = Deployment(flow_name="f", name="draft", work_pool_name=pool, job_variables={"stream_output": "loud"})
    check = client.validate_job_variables(deployment=draft)
    assert check.valid is False and check.field and "stream_output" in check.field


def test_bad_job_variables_on_a_run_are_refused(client: Any, pool: str) -> None:
    d = make_deployment(client, pool)
    with pytest.raises(InvalidArgument) as info:
        client.create_flow_run_from_deployment(d.id, job_variables={"env": "not an object"})
    assert info.value.field and "env" in info.value.field
