"""Subflows: child flow runs linked to a parent task run; stable identity across a parent retry."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests.integration.engine.helpers import current_flow_run_id, flow_runs_named, only_flow_run, task_runs_of, unique
from weir import flow, task
from weir.client.types import FlowRunFilter


@task
def inc(x: int) -> int:
    return x + 1


def test_subflow_is_a_child_flow_run_of_a_parent_task_run(client: Any) -> None:
    child_name, parent_name = unique("child"), unique("parent")

    @flow(name=child_name)
    def child(x: int) -> int:
        return inc(x) * 10

    @flow(name=parent_name)
    def parent() -> int:
        return child(1) + child(2)

    assert parent() == 50
    parent_run = only_flow_run(client, parent_name)
    children = flow_runs_named(client, child_name)
    assert len(children) == 2
    links = {t.id: t for t in task_runs_of(client, parent_run.id)}
    assert len(links) == 2
    for c in children:
        assert c.parent_task_run_id in links and c.state is not None and c.state.is_completed()
        assert links[c.parent_task_run_id].state.is_completed()  # type: ignore[union-attr]
        assert len(task_runs_of(client, c.id)) == 1
    by_parent = list(client.iter_flow_runs(FlowRunFilter(parent_flow_run_id=parent_run.id)))
    assert {r.id for r in by_parent} == {c.id for c in children}


def test_failed_subflow_fails_the_parent_unless_handled(client: Any) -> None:
    @flow(name=unique("bad-child"))
    def child() -> None:
        raise KeyError("child broke")

    @flow(name=unique("handles"))
    def handles() -> str:
        state = child(return_state=True)
        return state.display_name

    assert handles() == "Failed"

    parent_name = unique("fails")

    @flow(name=parent_name)
    def fails() -> None:
        child()

    with pytest.raises(KeyError, match="child broke"):
        fails()
    run = only_flow_run(client, parent_name)
    assert run.state is not None and run.state.is_failed()
    (link,) = task_runs_of(client, run.id)
    assert link.state is not None and link.state.is_failed()


async def test_concurrent_subflows_keep_their_own_results_on_parent_retry(client: Any) -> None:
    """Prefect #22259: after a parent retry, no subflow adopts another's result."""
    child_name, parent_name = unique("c22259"), unique("p22259")
    child_runs: list[int] = []

    @flow(name=child_name)
    async def child(i: int) -> str:
        child_runs.append(i)
        await asyncio.sleep(random.uniform(0, 0.05))  # finish in any order
        return f"result-{i}"

    attempts: list[list[str]] = []

    @flow(name=parent_name, retries=1)
    async def parent(n: int) -> list[str]:
        order = list(range(n))
        if attempts:
            order.reverse()  # the retry starts them in the opposite order
        results = await asyncio.gather(*(child(i) for i in order))
        by_input = dict(zip(order, results, strict=True))
        attempts.append([by_input[i] for i in range(n)])
        if len(attempts) == 1:
            raise RuntimeError("parent fails after its subflows completed")
        return [by_input[i] for i in range(n)]

    expected = [f"result-{i}" for i in range(6)]
    assert await parent(6) == expected
    assert attempts == [expected, expected]
    assert sorted(child_runs) == list(range(6))  # completed subflows were reused, not run again
    run = only_flow_run(client, parent_name)
    assert run.run_count == 2 and run.state is not None and run.state.is_completed()
    assert len(flow_runs_named(client, child_name)) == 6
    assert len(task_runs_of(client, run.id)) == 6


def test_parent_retry_reruns_only_the_subflow_that_failed(client: Any) -> None:
    child_name = unique("flaky-child")
    runs: list[int] = []

    @flow(name=child_name)
    def child(i: int) -> int:
        runs.append(i)
        if i == 1 and runs.count(1) == 1:
            raise ValueError("first try of child 1")
        return i * 10

    @flow(name=unique("retrying-parent"), retries=1)
    def parent() -> list[int]:
        return [child(0), child(1), child(2)]

    assert parent() == [0, 10, 20]
    assert runs == [0, 1, 1, 2]
    states = sorted(r.state.display_name for r in flow_runs_named(client, child_name))  # type: ignore[union-attr]
    assert states == ["Completed", "Completed", "Completed", "Failed"]


def test_identity_is_deterministic_for_the_same_call() -> None:
    ids: list[str] = []

    @task
    def capture(x: Any) -> None:
        from weir.context import task_run_ctx

        ctx = task_run_ctx.get()
        assert ctx is not None
        ids.append(ctx.task_run_id)

    @flow(name=unique("ids"))
    def f() -> str:
        capture({"a": [1, 2]})
        capture({"a": [1, 2]})  # same inputs: a second occurrence, a different id
        capture({"a": [2, 1]})
        return current_flow_run_id()

    f()
    assert len(set(ids)) == 3
