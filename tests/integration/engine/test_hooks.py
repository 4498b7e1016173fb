"""on_crashed and on_cancellation: a BaseException escaping a run, SIGTERM, a cancel through the API.

Hooks run once; a failing hook is logged and never changes the run's state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.engine.helpers import current_flow_run_id, eventually, only_flow_run, task_runs_of, unique
from weir import flow, task
from weir.client.types import State, StateType


def _broken_hook(*_: Any) -> None:
    raise RuntimeError("hook broke")


def test_keyboard_interrupt_in_a_flow_ends_it_crashed_with_hooks(client: Any) -> None:
    seen: list[str] = []
    name = unique("interrupted")

    @task(on_crashed=[lambda t, r, s: seen.append(f"task-crashed:{s.display_name}")])
    def interrupted() -> None:
        raise KeyboardInterrupt

    @flow(
        name=name,
        on_crashed=[_broken_hook, lambda f, r, s: seen.append(f"flow-crashed:{s.display_name}")],
        on_failure=[lambda f, r, s: seen.append("flow-failed")],
    )
    def f() -> None:
        interrupted()

    with pytest.raises(KeyboardInterrupt):
        f()
    assert seen == ["task-crashed:Crashed", "flow-crashed:Crashed"]
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.type is StateType.CRASHED  # the broken hook changed nothing
    assert "KeyboardInterrupt" in (run.state.message or "")
    (tr,) = task_runs_of(client, run.id)
    assert tr.state is not None and tr.state.type is StateType.CRASHED


async def test_system_exit_in_an_async_flow_ends_it_crashed(client: Any) -> None:
    seen: list[str] = []
    name = unique("exit")

    @flow(name=name, on_crashed=[lambda f, r, s: seen.append(s.display_name)])
    async def f() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        await f()
    assert seen == ["Crashed"]
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.type is StateType.CRASHED


def test_a_crashed_subflow_crashes_its_parent(client: Any) -> None:
    seen: list[str] = []
    parent_name, child_name = unique("crash-parent"), unique("crash-child")

    @flow(name=child_name, on_crashed=[lambda f, r, s: seen.append("child")])
    def child() -> None:
        raise KeyboardInterrupt

    @flow(name=parent_name, on_crashed=[lambda f, r, s: seen.append("parent")])
    def parent() -> None:
        child()

    with pytest.raises(KeyboardInterrupt):
        parent()
    assert seen == ["child", "parent"]
    for name in (parent_name, child_name):
        run = only_flow_run(client, name)
        assert run.state is not None and run.state.type is StateType.CRASHED


# ------------------------------------------------------------ in a process of its own

_SCRIPT = """
import json, pathlib, sys, time
from weir import flow, task

out = pathlib.Path(sys.argv[1])

def record(kind):
    def hook(obj, ctx, state):
        with out.open("a") as fh:
            fh.write(json.dumps([kind, state.type.value]) + "\\n")
    return hook

@task(on_cancellation=[record("task-cancelled")], on_crashed=[record("task-crashed")])
def busy():
    with out.open("a") as fh:
        fh.write(json.dumps(["task-started", None]) + "\\n")
    while True:  # busy in Python: stopped at its next bytecode on a pool thread
        sum(range(1000))

@flow(
    name=sys.argv[2],
    on_cancellation=[record("flow-cancelled")],
    on_crashed=[record("flow-crashed")],
    on_completion=[record("flow-completed")],
)
def f():
    busy.submit()
    time.sleep(600)  # blocked on the main thread: a signal still stops it

f()
"""


def _start(stack: Any, tmp_path: Path, name: str, heartbeat: float) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "flow_script.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    out = tmp_path / "hooks.jsonl"
    env = {
        **os.environ,
        "WEIR_API_ADDRESS": stack.address,
        "WEIR_HOME": str(tmp_path / "home"),
        "WEIR_HEARTBEAT_INTERVAL_SECONDS": str(heartbeat),
    }
    proc = subprocess.Popen([sys.executable, str(script), str(out), name], env=env)
    return proc, out


def _lines(out: Path) -> list[list[Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def _running(client: Any, name: str, out: Path) -> Any:
    def probe() -> Any:
        runs = [r for r in client.iter_flow_runs() if r.flow_name == name]
        started = ["task-started", None] in _lines(out)
        return started and runs and runs[0].state.type is StateType.RUNNING and runs[0]

    return eventually(probe, timeout=60)


def _finish(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cancel_through_the_api_stops_a_running_flow(stack: Any, client: Any, tmp_path: Path) -> None:
    name = unique("cancel-api")
    proc, out = _start(stack, tmp_path, name, heartbeat=0.1)
    run = _running(client, name, out)
    answer = client.set_flow_run_state(run.id, State(type=StateType.CANCELLING, message="from the test"))
    assert answer.state.type is StateType.CANCELLING
    assert _finish(proc) != 0  # the flow call raised RunCancelled
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.type is StateType.CANCELLED
    hooks = [line for line in _lines(out) if line[0] != "task-started"]
    assert sorted(hooks) == [["flow-cancelled", "CANCELLED"], ["task-cancelled", "CANCELLED"]]
    (tr,) = task_runs_of(client, run.id)
    assert tr.state is not None and tr.state.type is StateType.CANCELLED


def test_sigterm_ends_the_run_crashed_with_hooks(stack: Any, client: Any, tmp_path: Path) -> None:
    name = unique("sigterm")
    proc, out = _start(stack, tmp_path, name, heartbeat=30)
    _running(client, name, out)
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc) == 128 + signal.SIGTERM
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.type is StateType.CRASHED
    assert "SIGTERM" in (run.state.message or "")
    hooks = [line for line in _lines(out) if line[0] != "task-started"]
    assert sorted(hooks) == [["flow-crashed", "CRASHED"], ["task-crashed", "CRASHED"]]


def test_sigterm_while_cancelling_ends_the_run_cancelled(stack: Any, client: Any, tmp_path: Path) -> None:
    """How a worker stops a cancelled run: SIGTERM to its process. The run ends Cancelled, not Crashed."""
    name = unique("sigterm-cancel")
    proc, out = _start(stack, tmp_path, name, heartbeat=30)  # too slow to hear of the cancel itself
    run = _running(client, name, out)
    client.set_flow_run_state(run.id, State(type=StateType.CANCELLING))
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc) == 128 + signal.SIGTERM
    run = only_flow_run(client, name)
    assert run.state is not None and run.state.type is StateType.CANCELLED
    assert ["flow-cancelled", "CANCELLED"] in _lines(out)
    assert not any(line[0] == "flow-crashed" for line in _lines(out))


def test_a_flow_that_ends_normally_runs_no_crash_hook(client: Any) -> None:
    seen: list[str] = []

    @flow(name=unique("calm"), on_crashed=[lambda *a: seen.append("crashed")])
    def f() -> str:
        return current_flow_run_id()

    f()
    assert seen == []
