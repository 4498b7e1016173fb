"""submit, map, unmapped, futures, wait, as_completed, wait_for, futures as arguments, task runners."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from tests.integration.engine.helpers import current_flow_run_id, task_runs_of, unique
from weir import as_completed, flow, task, unmapped, wait
from weir.errors import InvalidArgument, WeirError
from weir.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner


@task
def square(x: int) -> int:
    return x * x


@task
def scale(x: int, factor: int) -> int:
    return x * factor


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"bad input {x}")
    return x


@task
def pid() -> int:
    return os.getpid()


def test_submit_and_result(client: Any) -> None:
    @flow(name=unique("submit"))
    def f() -> tuple[list[int], str]:
        futures = [square.submit(i) for i in range(10)]
        return [fut.result() for fut in futures], current_flow_run_id()

    values, run_id = f()
    assert values == [i * i for i in range(10)]
    runs = task_runs_of(client, run_id)
    assert len(runs) == 10 and all(r.state is not None and r.state.is_completed() for r in runs)


def test_map_with_unmapped_and_keyword_columns() -> None:
    @flow(name=unique("map"))
    def f() -> tuple[list[int], list[int]]:
        a = scale.map([1, 2, 3], factor=unmapped(10))
        b = scale.map(x=iter([1, 2]), factor=iter([5, 6]))  # iterators are read once
        return a.result(), b.result()

    assert f() == ([10, 20, 30], [5, 12])


def test_map_length_mismatch_is_invalid() -> None:
    @flow(name=unique("map-bad"))
    def f() -> None:
        scale.map([1, 2], [1, 2, 3])

    with pytest.raises(InvalidArgument, match="different lengths"):
        f()


def test_submit_outside_a_flow_is_a_clear_error() -> None:
    with pytest.raises(WeirError, match="inside a @flow"):
        square.submit(1)


def test_futures_as_arguments_and_wait_for() -> None:
    order: list[str] = []

    @task
    def record(label: str, delay: float = 0.0) -> str:
        time.sleep(delay)
        order.append(label)
        return label

    @flow(name=unique("deps"))
    def f() -> int:
        squares = [square.submit(i) for i in range(4)]
        first = record.submit("first", 0.1)
        second = record.submit("second", wait_for=[first])
        summed = total.submit(squares)  # a list of futures becomes a list of results
        doubled = scale(summed, 2)  # a future passed to a direct call
        second.result()
        return doubled

    assert f() == 2 * (0 + 1 + 4 + 9)
    assert order == ["first", "second"]


def test_wait_and_as_completed() -> None:
    @task
    def sleepy(x: float) -> float:
        time.sleep(x)
        return x

    @flow(name=unique("wait"))
    def f() -> tuple[int, int, list[float]]:
        futures = sleepy.map([0.3, 0.0, 0.1])
        done, not_done = wait(futures)
        ordered = [fut.result() for fut in as_completed(sleepy.map([0.2, 0.0]))]
        return len(done), len(not_done), ordered

    n_done, n_not_done, ordered = f()
    assert (n_done, n_not_done) == (3, 0)
    assert sorted(ordered) == [0.0, 0.2]


def test_a_task_raising_inside_a_thread(client: Any) -> None:
    name = unique("raise-in-thread")

    @flow(name=name)
    def f() -> tuple[Any, str]:
        futures = fail_on.map([1, 2, 3], bad=unmapped(2))
        return [fut.state for fut in futures], current_flow_run_id()

    states, run_id = f()
    assert [s.display_name for s in states] == ["Completed", "Failed", "Completed"]
    with pytest.raises(ValueError, match="bad input 2"):
        states[1].result()
    runs = {r.name: r for r in task_runs_of(client, run_id)}
    assert sorted(r.state.display_name for r in runs.values()) == ["Completed", "Completed", "Failed"]  # type: ignore[union-attr]

    @flow(name=unique("raise-result"))
    def g() -> int:
        return fail_on.submit(2, 2).result()

    with pytest.raises(ValueError, match="bad input 2"):
        g()


def test_a_failed_upstream_stops_its_dependents(client: Any) -> None:
    ran: list[int] = []

    @task
    def after(x: int) -> int:
        ran.append(x)
        return x

    @flow(name=unique("upstream"))
    def f() -> tuple[Any, Any, str]:
        bad = fail_on.submit(1, 1)
        by_value = after.submit(bad)
        by_order = after.submit(2, wait_for=[bad])
        return by_value.state, by_order.state, current_flow_run_id()

    state = f(return_state=True)
    assert state.is_completed()
    by_value, by_order, run_id = state.result()
    assert by_value.is_failed() and by_order.is_failed() and ran == []
    assert "upstream" in (by_order.message or "")
    assert len(task_runs_of(client, run_id)) == 3


def test_thread_pool_is_bounded() -> None:
    seen: set[str] = set()
    peak = [0]
    lock = threading.Lock()

    @task
    def note(i: int) -> int:
        with lock:
            seen.add(threading.current_thread().name)
            peak[0] = max(peak[0], threading.active_count())
        return i

    @flow(name=unique("bounded"), task_runner=ThreadPoolTaskRunner(max_workers=3))
    def f() -> int:
        before = threading.active_count()
        values = note.map(range(300)).result()
        assert sum(values) == sum(range(300))
        return before

    before = f()
    assert len(seen) <= 3
    assert peak[0] <= before + 3


async def test_async_tasks_submitted_and_gathered() -> None:
    import asyncio

    @task
    async def ainc(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    @flow(name=unique("async-submit"))
    async def f() -> list[int]:
        direct = await asyncio.gather(*(ainc(i) for i in range(5)))
        submitted = await ainc.map(range(3))
        return [*direct, *submitted]

    assert await f() == [1, 2, 3, 4, 5, 1, 2, 3]


async def test_async_tasks_submitted_in_an_async_flow_run_on_its_loop(client: Any) -> None:
    import asyncio
    import threading

    from weir.errors import WeirError

    seen: list[tuple[Any, int]] = []

    @task
    async def where(x: int) -> int:
        seen.append((asyncio.get_running_loop(), threading.get_ident()))
        await asyncio.sleep(0)
        return x

    @task
    async def add(a: int, b: int) -> int:
        seen.append((asyncio.get_running_loop(), threading.get_ident()))
        return a + b

    @flow(name=unique("async-loop"))
    async def f() -> tuple[Any, int, list[int], int, str]:
        loop, me = asyncio.get_running_loop(), threading.get_ident()
        first = where.submit(1)
        with pytest.raises(WeirError, match="await"):
            first.result()  # would block the loop the task needs
        both = add.submit(first, where.submit(2), wait_for=[first])  # futures as arguments
        mapped = await where.map(range(3))
        return loop, me, mapped, await both, current_flow_run_id()

    loop, me, mapped, total, run_id = await f()
    assert mapped == [0, 1, 2] and total == 3
    assert len(seen) == 6 and all(s == (loop, me) for s in seen)
    runs = task_runs_of(client, run_id)
    assert len(runs) == 6 and all(r.state is not None and r.state.is_completed() for r in runs)


def test_async_tasks_submitted_in_a_sync_flow_still_run(client: Any) -> None:
    import asyncio

    @task
    async def ainc(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @flow(name=unique("sync-submits-async"))
    def f() -> list[int]:
        return ainc.map(range(4)).result()

    assert f() == [1, 2, 3, 4]


def test_process_pool_runs_bodies_in_worker_processes(client: Any) -> None:
    @flow(name=unique("processes"), task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f() -> tuple[list[int], list[int], Any, str]:
        pids = pid.map([None] * 4 if False else []).result()  # an empty map is fine
        pids = [pid.submit().result() for _ in range(2)]
        squares = square.map(range(5)).result()
        failed = fail_on.submit(3, 3).state
        return pids, squares, failed, current_flow_run_id()

    pids, squares, failed, run_id = f()
    assert squares == [0, 1, 4, 9, 16]
    assert all(p != os.getpid() for p in pids)
    assert failed.is_failed()
    with pytest.raises(ValueError, match="bad input 3"):
        failed.result()
    runs = task_runs_of(client, run_id)
    assert len(runs) == 8
