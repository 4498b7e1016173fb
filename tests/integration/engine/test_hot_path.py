"""When a flow call returns, every task run it made is durable and readable, with its final state."""

from __future__ import annotations

import threading
from typing import Any

from aiosqlite import core as aiosqlite_core

from tests.integration.engine.helpers import current_flow_run_id, task_runs_of, unique
from weir import flow, task


@task
def one(i: int) -> int:
    return i


@task
def maybe_fail(i: int) -> int:
    if i % 7 == 0:
        raise ValueError(i)
    return i


def test_a_thousand_sequential_tasks_are_visible_at_return(client: Any) -> None:
    @flow(name=unique("thousand"))
    def f() -> str:
        for i in range(1000):
            one(i)
        return current_flow_run_id()

    run_id = f()
    # No polling: read once, right after the call returned.
    runs = task_runs_of(client, run_id)
    assert len(runs) == 1000
    assert all(r.state is not None and r.state.is_completed() and r.run_count == 1 for r in runs)
    assert len({r.id for r in runs}) == 1000


def _sqlite_connection_thread(thread: threading.Thread) -> bool:
    """aiosqlite runs each connection on a thread named after its worker function."""
    return thread.name.endswith(f"({aiosqlite_core._connection_worker_thread.__name__})")


def test_submitted_and_failing_tasks_are_final_at_return(client: Any) -> None:
    threads_before = set(threading.enumerate())

    @flow(name=unique("mixed"))
    def f() -> str:
        futures = maybe_fail.map(range(200))
        for fut in futures:
            fut.wait()
        for fut in futures:
            _ = fut.state  # observed: the flow handles the failures
        return current_flow_run_id()

    run_id = f()
    runs = task_runs_of(client, run_id)
    assert len(runs) == 200
    failed = [r for r in runs if r.state is not None and r.state.is_failed()]
    completed = [r for r in runs if r.state is not None and r.state.is_completed()]
    assert len(failed) == len(range(0, 200, 7)) and len(completed) == 200 - len(failed)
    # The runner's threads are gone when the flow returns; no per-task threads were left behind. (The
    # in-process server's SQLite connections are threads too: one it opened meanwhile is not the SDK's.)
    left = [t for t in set(threading.enumerate()) - threads_before if not _sqlite_connection_thread(t)]
    assert left == [], [t.name for t in left]


def test_many_flow_runs_each_complete_with_their_tasks(client: Any) -> None:
    @flow(name=unique("many"))
    def f(n: int) -> str:
        for i in range(10):
            one(i + n)
        return current_flow_run_id()

    ids = [f(n) for n in range(20)]
    assert len(set(ids)) == 20
    for run_id in ids:
        runs = task_runs_of(client, run_id)
        assert len(runs) == 10 and all(r.state is not None and r.state.is_completed() for r in runs)
