"""timeout_seconds with sync bodies: the body is stopped, not left running after the TimedOut state.

On the main thread a signal stops even a sleeping body; on other threads the
body stops at its next bytecode, and one blocked in C stops when that call
returns (the run does not wait for it). Each test checks the body's own
``finally`` ran, or that it never went past the blocking call.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.integration.engine.helpers import current_flow_run_id, only_flow_run, task_runs_of, unique
from weir import flow, task


def test_a_sleeping_task_on_the_main_thread_is_stopped(client: Any) -> None:
    stopped, went_on = threading.Event(), threading.Event()

    @task(timeout_seconds=0.2)
    def sleepy() -> None:
        try:
            time.sleep(60)  # the test would hit its own timeout if this were not interrupted
            went_on.set()
        finally:
            stopped.set()

    @flow(name=unique("main-sleep"))
    def f() -> tuple[Any, str]:
        return sleepy(return_state=True), current_flow_run_id()

    assert threading.current_thread() is threading.main_thread()
    state, run_id = f()
    assert state.name == "TimedOut" and "0.2" in (state.message or "")
    assert stopped.is_set() and not went_on.is_set()
    (tr,) = task_runs_of(client, run_id)
    assert tr.state is not None and tr.state.name == "TimedOut"


def test_a_busy_task_on_a_runner_thread_is_stopped() -> None:
    stopped = threading.Event()
    caught: list[str] = []

    @task(timeout_seconds=0.2)
    def busy() -> None:
        try:
            while True:
                try:
                    sum(range(1000))
                except Exception as exc:  # the interrupt is no Exception: this never catches it
                    caught.append(repr(exc))
        finally:
            stopped.set()

    @flow(name=unique("thread-busy"))
    def f() -> Any:
        return busy.submit().state

    state = f()
    assert state.name == "TimedOut"
    assert stopped.is_set() and caught == []


def test_a_task_blocked_in_c_times_out_on_time_and_stops_when_the_call_returns() -> None:
    """The documented limit: a blocking C call on a non-main thread cannot be broken."""
    finished, went_on = threading.Event(), threading.Event()

    @task(timeout_seconds=0.1)
    def blocked() -> None:
        try:
            time.sleep(1.5)
            went_on.set()
        finally:
            finished.set()

    @flow(name=unique("thread-blocked"))
    def f() -> Any:
        return blocked.submit().state

    state = f()
    assert state.name == "TimedOut" and "blocked outside Python" in (state.message or "")
    assert finished.wait(30)
    assert not went_on.is_set()  # the exception landed as soon as the sleep returned


def test_a_sleeping_flow_on_the_main_thread_is_stopped(client: Any) -> None:
    name = unique("flow-main-sleep")
    stopped, went_on = threading.Event(), threading.Event()

    @flow(name=name, timeout_seconds=0.2)
    def slow() -> None:
        try:
            time.sleep(60)
            went_on.set()
        finally:
            stopped.set()

    state = slow(return_state=True)
    assert state.name == "TimedOut"
    assert stopped.is_set() and not went_on.is_set()
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.name == "TimedOut"


def test_a_busy_flow_off_the_main_thread_is_stopped_with_its_tasks(client: Any) -> None:
    name = unique("flow-thread-busy")
    stopped: list[str] = []

    @task
    def spin() -> None:
        try:
            while True:
                sum(range(1000))
        finally:
            stopped.append("task")

    @flow(name=name, timeout_seconds=0.3)
    def busy() -> None:
        spin.submit()
        try:
            while True:
                sum(range(1000))
        finally:
            stopped.append("flow")

    states: list[Any] = []
    thread = threading.Thread(target=lambda: states.append(busy(return_state=True)))
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    (state,) = states
    assert state.name == "TimedOut"
    assert sorted(stopped) == ["flow", "task"]  # the flow's timeout stops its running tasks too
    run = only_flow_run(client, name)
    (tr,) = task_runs_of(client, run.id)
    assert tr.state is not None and tr.state.name == "TimedOut"
