"""@flow and @task: bare and with options, sync and async, signatures, with_options, hooks, timeouts."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest

from tests.integration.engine.helpers import current_flow_run_id, only_flow_run, state_names, task_runs_of, unique
from weir import Flow, Task, flow, task
from weir.errors import InvalidArgument


@task
def add(x: int, y: int) -> int:
    return x + y


@task(name="double-it", tags=["math"], retries=1)
def double(x: int) -> int:
    return 2 * x


@task
async def aincr(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


def test_bare_and_configured_decorators_keep_the_function() -> None:
    assert isinstance(add, Task) and add.name == "add"
    assert double.name == "double-it" and double.options.tags == frozenset({"math"})
    assert inspect.signature(add) == inspect.signature(add.fn)
    assert add.__name__ == "add" and add.__doc__ is None
    # Outside a flow a task is just its function.
    assert add(1, 2) == 3


def test_sync_flow_runs_tasks_and_records_them(client: Any) -> None:
    name = unique("sync")

    @flow(name=name, tags=["t1"])
    def pipeline(n: int) -> tuple[int, str]:
        return double(add(n, 1)), current_flow_run_id()

    value, run_id = pipeline(2)
    assert value == 6
    run = only_flow_run(client, name)
    assert run.id == run_id and run.state is not None and run.state.is_completed()
    assert run.parameters == {"n": 2} and "t1" in run.tags
    runs = {t.name.rsplit("-", 1)[0]: t for t in task_runs_of(client, run_id)}
    assert set(runs) == {"add", "double-it"}
    assert all(t.state is not None and t.state.is_completed() for t in runs.values())
    assert set(runs["double-it"].tags) == {"math", "t1"}


async def test_async_flow_with_async_and_sync_tasks(client: Any) -> None:
    name = unique("async")

    @flow(name=name)
    async def pipeline(n: int) -> int:
        a = await aincr(n)
        b = add(a, 10)
        c = await asyncio.gather(aincr(b), aincr(b + 1))
        return sum(c)

    assert await pipeline(1) == 27
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.is_completed()
    assert len(task_runs_of(client, run.id)) == 4


def test_with_options_copies_and_changes() -> None:
    renamed = double.with_options(name="triple-name", retries=3)
    assert renamed.name == "triple-name" and renamed.options.retries == 3
    assert double.name == "double-it" and double.options.retries == 1
    assert renamed.options.tags == double.options.tags

    @flow
    def base() -> int:
        return 1

    other = base.with_options(name="other-flow", retries=2)
    assert isinstance(other, Flow) and other.name == "other-flow" and other.options.retries == 2
    assert base.name == "base" and base.options.retries == 0
    assert other() == 1


def test_unknown_option_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="retires"):
        task(retires=3)(lambda: None)
    with pytest.raises(TypeError, match="retires"):
        add.with_options(retires=3)
    with pytest.raises(InvalidArgument, match="retries"):
        task(retries=-1)(lambda: None)


def test_parameters_are_validated_and_coerced_from_hints(client: Any) -> None:
    name = unique("coerce")

    @flow(name=name)
    def typed(n: int, label: str = "x") -> tuple[int, str]:
        return n + 1, label

    assert typed("41") == (42, "x")  # type: ignore[arg-type]
    assert only_flow_run(client, name).parameters == {"n": 41, "label": "x"}


def test_task_and_flow_hooks(client: Any) -> None:
    seen: list[str] = []

    @task(on_completion=[lambda t, r, s: seen.append(f"task-ok:{s.display_name}")])
    def ok() -> int:
        return 1

    @task(on_failure=[lambda t, r, s: seen.append(f"task-fail:{s.display_name}")])
    def bad() -> int:
        raise ValueError("no")

    @flow(
        name=unique("hooks"),
        on_running=[lambda f, r, s: seen.append(f"flow-running:{s.display_name}")],
        on_completion=[lambda f, r, s: seen.append(f"flow-ok:{s.display_name}")],
    )
    def fine() -> int:
        ok()
        try:
            bad()
        except ValueError:
            pass
        return 0

    fine()
    assert seen == ["flow-running:Running", "task-ok:Completed", "task-fail:Failed", "flow-ok:Completed"]

    seen.clear()

    @flow(name=unique("hooks-fail"), on_failure=[lambda f, r, s: seen.append(f"flow-fail:{s.display_name}")])
    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        broken()
    assert seen == ["flow-fail:Failed"]


def test_a_failing_hook_does_not_change_the_outcome() -> None:
    def explode(*_: Any) -> None:
        raise RuntimeError("hook broke")

    @flow(name=unique("bad-hook"), on_completion=[explode])
    def fine() -> int:
        return 5

    assert fine() == 5


def test_task_timeout_ends_timed_out(client: Any) -> None:
    @task(timeout_seconds=0.2)
    def slow() -> None:
        time.sleep(5)

    @flow(name=unique("task-timeout"))
    def f() -> Any:
        return slow(return_state=True), current_flow_run_id()

    state, run_id = f()
    assert state.is_failed() and state.name == "TimedOut"
    (tr,) = task_runs_of(client, run_id)
    assert tr.state is not None and tr.state.name == "TimedOut"


async def test_async_task_timeout_ends_timed_out() -> None:
    @task(timeout_seconds=0.2)
    async def slow() -> None:
        await asyncio.sleep(5)

    @flow(name=unique("atask-timeout"))
    async def f() -> Any:
        return await slow(return_state=True)

    state = await f()
    assert state.is_failed() and state.name == "TimedOut"


def test_flow_timeout_ends_timed_out(client: Any) -> None:
    name = unique("flow-timeout")

    @flow(name=name, timeout_seconds=0.2)
    def slow() -> None:
        time.sleep(3)

    state = slow(return_state=True)
    assert state.is_failed() and state.name == "TimedOut"
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.name == "TimedOut"
    assert state_names(client, flow_run_id=run.id)[-1] == "TimedOut"
