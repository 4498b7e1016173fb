"""``weir.deployments``: deploy, Flow.deploy and run_deployment through the SDK runtime."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.deployments_api.conftest import unique
from weir import flow, task
from weir import runtime as weir_runtime
from weir._entrypoints import load_flow
from weir.client.types import CollisionStrategy, FlowRunFilter, State, StateType
from weir.deployments import arun_deployment, deploy, run_deployment
from weir.errors import FailedPrecondition, InvalidArgument


@flow(name="deploy-api-etl", retries=2, retry_delay_seconds=[1, 10], version="3")
def etl(day: str, limit: int = 10) -> int:
    return limit


@flow(name="deploy-api-caller")
def caller(deployment: str, timeout: float | None = 0) -> tuple[str, str | None]:
    child = run_deployment(deployment, parameters={"day": "from-a-flow"}, timeout=timeout, poll_interval=0.2)
    return child.id, weir_runtime.flow_run.id


@task
def start_from_a_task(deployment: str) -> tuple[str, str | None]:
    return run_deployment(deployment, parameters={"day": "from-a-task"}, timeout=0).id, weir_runtime.task_run.id


@flow(name="deploy-api-task-caller")
def task_caller(deployment: str) -> tuple[str, str | None]:
    return start_from_a_task(deployment)


@pytest.fixture(autouse=True)
def engine(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the SDK runtime (used by deploy and run_deployment) at the stack."""
    from weir.engine.runtime import shutdown_runtime
    from weir.settings import get_settings

    shutdown_runtime()
    monkeypatch.setenv("WEIR_API_ADDRESS", stack.address)
    monkeypatch.setenv("WEIR_HOME", str(stack.settings.home))
    get_settings.cache_clear()
    yield
    shutdown_runtime()
    get_settings.cache_clear()


def test_deploy_describes_the_flow(client: Any, pool: str) -> None:
    name = unique("dep")
    d = deploy(etl, name=name, work_pool_name=pool, parameters={"day": "mon"}, interval=3600, tags=["t"])
    here = Path(__file__).resolve()
    assert d.full_name == f"deploy-api-etl/{name}"
    assert d.working_directory == str(Path.cwd())
    assert d.entrypoint == f"{here.relative_to(Path.cwd()).as_posix()}:etl"
    assert d.parameters == {"day": "mon"}
    assert d.parameter_schema["required"] == ["day"]
    assert d.parameter_schema["properties"]["limit"]["default"] == 10
    assert (d.retries, d.retry_delay_seconds, d.version) == (2, (1.0, 10.0), "3")
    assert [s.interval for s in d.schedules] == [timedelta(hours=1)]
    assert client.read_deployment(name=d.full_name) == d
    # What a worker loads from the deployment is this flow (a second copy of this module).
    loaded = load_flow(d.entrypoint, d.working_directory)
    assert (loaded.name, loaded.fn.__code__.co_filename) == (etl.name, etl.fn.__code__.co_filename)


def test_flow_deploy_replaces_the_deployment(client: Any, pool: str) -> None:
    name = unique("dep")
    first = etl.deploy(name, work_pool_name=pool, cron="0 3 * * *", timezone="Europe/Paris")
    assert [(s.cron, s.timezone) for s in first.schedules] == [("0 3 * * *", "Europe/Paris")]
    second = etl.deploy(name, work_pool_name=pool, concurrency_limit=1, collision_strategy="cancel_new")
    assert second.id == first.id
    assert second.schedules == ()
    assert (second.concurrency_limit, second.collision_strategy) == (1, CollisionStrategy.CANCEL_NEW)


def test_deploy_to_a_missing_pool_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgument, match="work pool 'no-such-pool' does not exist") as info:
        deploy(etl, name="x", work_pool_name="no-such-pool")
    assert info.value.field == "work_pool_name"


def test_run_deployment_with_timeout_zero_returns_at_once(client: Any, pool: str) -> None:
    d = etl.deploy(unique("dep"), work_pool_name=pool, parameters={"day": "mon"})
    run = run_deployment(d.full_name, parameters={"limit": 1}, timeout=0, tags=["now"])
    assert run.deployment_id == d.id
    assert run.parameters == {"day": "mon", "limit": 1}
    assert "now" in run.tags
    assert run.state is not None and run.state.type is StateType.SCHEDULED
    # By id works as well.
    assert run_deployment(d.id, timeout=0).deployment_id == d.id


def test_run_deployment_returns_the_last_seen_run_at_the_timeout(pool: str) -> None:
    d = etl.deploy(unique("dep"), work_pool_name=pool, parameters={"day": "mon"})
    started = time.monotonic()
    run = run_deployment(d.full_name, timeout=0.6, poll_interval=0.1)
    assert 0.5 <= time.monotonic() - started < 5
    assert run.state is not None and not run.state.is_final()


def _finish_runs_of(client: Any, deployment_id: str, stop: threading.Event) -> None:
    """Play the worker: move the deployment's runs to COMPLETED."""
    while not stop.is_set():
        for run in client.iter_flow_runs(FlowRunFilter(deployment_id=deployment_id)):
            if run.state and run.state.type is StateType.SCHEDULED:
                for kind in (StateType.PENDING, StateType.RUNNING, StateType.COMPLETED):
                    client.set_flow_run_state(run.id, State(type=kind))
        time.sleep(0.1)


def test_run_deployment_waits_for_the_final_state(client: Any, pool: str) -> None:
    d = etl.deploy(unique("dep"), work_pool_name=pool, parameters={"day": "mon"})
    stop = threading.Event()
    worker = threading.Thread(target=_finish_runs_of, args=(client, d.id, stop), daemon=True)
    worker.start()
    started = time.monotonic()
    try:
        # A long poll interval: the run's state events are what wake the wait.
        run = run_deployment(d.full_name, timeout=30, poll_interval=20)
    finally:
        stop.set()
        worker.join()
    assert run.state is not None and run.state.type is StateType.COMPLETED
    assert time.monotonic() - started < 10


def test_run_deployment_inside_a_flow_makes_a_child_run(client: Any, pool: str) -> None:
    d = etl.deploy(unique("dep"), work_pool_name=pool)
    run_id, caller_id = caller(d.full_name)
    run = client.read_flow_run(run_id)
    assert (run.deployment_id, run.parameters) == (d.id, {"day": "from-a-flow"})
    # Linked like a subflow: a task run of the caller stands for the call; not waited for, it ends COMPLETED.
    link = client.read_task_run(run.parent_task_run_id)
    assert link.flow_run_id == caller_id and link.name == f"run_deployment-{d.full_name}"
    assert link.state.type is StateType.COMPLETED and "not waited for" in link.state.message


def test_a_waited_run_deployment_ends_its_task_run_in_the_childs_state(client: Any, pool: str) -> None:
    d = etl.deploy(unique("dep"), work_pool_name=pool, parameters={"day": "mon"})
    stop = threading.Event()
    worker = threading.Thread(target=_finish_runs_of, args=(client, d.id, stop), daemon=True)
    worker.start()
    try:
        run_id, caller_id = caller(d.full_name, timeout=None)
    finally:
        stop.set()
        worker.join()
    link = client.read_task_run(client.read_flow_run(run_id).parent_task_run_id)
    assert link.flow_run_id == caller_id
    assert link.state.type is StateType.COMPLETED and "ended Completed" in link.state.message


def test_run_deployment_inside_a_task_is_a_child_of_that_task_run(client: Any, pool: str) -> None:
    d = etl.deploy(unique("dep"), work_pool_name=pool)
    run_id, task_run_id = task_caller(d.full_name)
    assert client.read_flow_run(run_id).parent_task_run_id == task_run_id


async def test_arun_deployment(pool: str) -> None:
    d = etl.deploy(unique("dep"), work_pool_name=pool, parameters={"day": "mon"})
    run = await arun_deployment(d.full_name, timeout=0)
    assert run.deployment_id == d.id


def test_run_deployment_of_a_paused_deployment_fails(client: Any, pool: str) -> None:
    d = etl.deploy(unique("dep"), work_pool_name=pool, parameters={"day": "mon"}, paused=True)
    with pytest.raises(FailedPrecondition):
        run_deployment(d.full_name, timeout=0)
