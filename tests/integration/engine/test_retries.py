"""Retries of tasks and flows, decided by the server's enforce_retries rule."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.engine.helpers import current_flow_run_id, only_flow_run, state_names, task_runs_of, unique
from weir import exponential_backoff, flow, task


def test_task_retries_until_it_succeeds(client: Any) -> None:
    calls: list[int] = []

    @task(retries=2)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError(f"attempt {len(calls)}")
        return "ok"

    @flow(name=unique("task-retry"))
    def f() -> tuple[str, str]:
        return flaky(), current_flow_run_id()

    value, run_id = f()
    assert value == "ok" and len(calls) == 3
    (tr,) = task_runs_of(client, run_id)
    assert tr.run_count == 3 and tr.state is not None and tr.state.is_completed()
    names = state_names(client, task_run_id=tr.id)
    assert names.count("AwaitingRetry") == 2 and names[-1] == "Completed"


def test_task_retries_exhausted_fail_the_flow(client: Any) -> None:
    @task(retries=1, retry_delay_seconds=0.05)
    def always() -> None:
        raise ValueError("never")

    name = unique("exhausted")

    @flow(name=name)
    def f() -> None:
        always()

    with pytest.raises(ValueError, match="never"):
        f()
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.is_failed() and "never" in (run.state.message or "")
    (tr,) = task_runs_of(client, run.id)
    assert tr.run_count == 2 and tr.state is not None and tr.state.is_failed()


def test_retry_delay_list_and_backoff_helper() -> None:
    assert exponential_backoff(0.5, retries=3) == [0.5, 1.0, 2.0]
    t = task(retries=3, retry_delay_seconds=[0.01, 0.02])(lambda: None)
    assert t.options.retry_delays() == (0.01, 0.02)
    t2 = task(retries=2, retry_delay_seconds=exponential_backoff(0.01, retries=2))(lambda: None)
    assert t2.options.retry_delays() == (0.01, 0.02)

    calls: list[int] = []

    @task(retries=2, retry_delay_seconds=[0.01, 0.02], retry_jitter_factor=0.5)
    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("again")
        return len(calls)

    @flow(name=unique("delays"))
    def f() -> int:
        return flaky()

    assert f() == 3


def test_retry_condition_fn_decides() -> None:
    calls: list[str] = []

    def only_oserror(task: Any, ctx: Any, state: Any) -> bool:
        return isinstance(state.result(raise_on_failure=False), OSError)

    @task(retries=3, retry_condition_fn=only_oserror)
    def picky(kind: str) -> None:
        calls.append(kind)
        raise (OSError if kind == "os" else KeyError)(kind)

    @flow(name=unique("condition"))
    def f(kind: str) -> Any:
        return picky(kind, return_state=True)

    assert f("key").is_failed() and calls == ["key"]
    calls.clear()
    assert f("os").is_failed() and calls == ["os"] * 4


def test_flow_retries_once_then_succeeds(client: Any) -> None:
    attempts: list[int] = []
    task_calls: list[int] = []

    @task
    def step(x: int) -> int:
        task_calls.append(x)
        return x * 10

    name = unique("flow-retry")

    @flow(name=name, retries=1, retry_delay_seconds=0.05)
    def f(x: int) -> int:
        value = step(x)
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return value + 1

    assert f(4) == 41
    assert len(attempts) == 2
    assert task_calls == [4]  # the completed call is reused by the retried attempt, not run again
    run = only_flow_run(client, name)
    assert run.run_count == 2 and run.state is not None and run.state.is_completed()
    names = state_names(client, flow_run_id=run.id)
    assert "AwaitingRetry" in names and names[-1] == "Completed"
    (tr,) = task_runs_of(client, run.id)
    assert tr.state is not None and tr.state.is_completed()


def test_flow_retry_runs_a_task_that_failed_in_the_first_attempt_again(client: Any) -> None:
    calls: list[int] = []

    @task
    def fails_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first time")
        return "second time"

    name = unique("flow-retry-task")

    @flow(name=name, retries=1)
    def f() -> str:
        return fails_once()

    assert f() == "second time"
    run = only_flow_run(client, name)
    (tr,) = task_runs_of(client, run.id)
    assert tr.state is not None and tr.state.is_completed()
    assert state_names(client, task_run_id=tr.id)[-3:] == ["Failed", "Running", "Completed"]


async def test_async_flow_retries(client: Any) -> None:
    attempts: list[int] = []
    name = unique("aflow-retry")

    @flow(name=name, retries=2)
    async def f() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("again")
        return len(attempts)

    assert await f() == 3
    assert only_flow_run(client, name).run_count == 3


def test_flow_retries_exhausted_end_failed(client: Any) -> None:
    name = unique("flow-retry-fail")

    @flow(name=name, retries=1)
    def f() -> None:
        raise RuntimeError("always")

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="always"):
        state.result()
    run = only_flow_run(client, name)
    assert run.run_count == 2 and run.state is not None and run.state.is_failed()


_RETRIED_ELSEWHERE = """
import pathlib
from weir import flow, task

here = pathlib.Path(__file__).parent

@task  # persist_result off: the value lives only in the process that ran it
def compute() -> int:
    with (here / "calls").open("a") as fh:
        fh.write("ran\\n")
    return 42

@flow(persist_result=True)
def retried() -> int:
    value = compute()
    marker = here / "first-attempt-done"
    if not marker.exists():
        marker.write_text("x")
        raise SystemExit(1)  # this process ends; the run crashes and a retry is due
    return value
"""


def test_a_flow_retried_in_another_process_runs_a_task_whose_result_was_not_kept(
    stack: Any, client: Any, tmp_path: Any
) -> None:
    """The first attempt's task completed with no persisted result; its process is gone. The retry,
    in a new process, runs that task again (like Prefect) instead of returning None for it."""
    import os
    import subprocess
    import sys

    from weir.client.types import RunPolicy, StateType
    from weir.results import load_result

    (tmp_path / "retried_flow.py").write_text(_RETRIED_ELSEWHERE)
    run = client.create_flow_run(flow_name=unique("retried-elsewhere"), policy=RunPolicy(retries=1))
    env = {
        **os.environ,
        "WEIR_API_ADDRESS": stack.address,
        "WEIR_HOME": str(tmp_path / "home"),
        "WEIR_FLOW_RUN_ID": run.id,
        "WEIR_ENTRYPOINT": f"{tmp_path / 'retried_flow.py'}:retried",
    }
    first = subprocess.run([sys.executable, "-m", "weir.engine.execute"], env=env, timeout=120)
    assert first.returncode != 0
    assert client.read_flow_run(run.id).state.name == "AwaitingRetry"
    second = subprocess.run([sys.executable, "-m", "weir.engine.execute"], env=env, timeout=120)
    assert second.returncode == 0
    done = client.read_flow_run(run.id)
    assert done.state.type is StateType.COMPLETED and done.run_count == 2
    assert load_result(done.state.details.result_ref) == 42  # not None
    assert (tmp_path / "calls").read_text().split() == ["ran", "ran"]
    (tr,) = task_runs_of(client, run.id)
    assert state_names(client, task_run_id=tr.id)[-3:] == ["Completed", "Running", "Completed"]
