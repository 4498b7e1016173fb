"""Run logs, log_prints, weir.runtime and tags, through the real stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

from weir import flow, runtime, tags, task
from weir.client import WeirClient
from weir.client.types import LogFilter, TaskRunFilter
from weir.errors import FailedPrecondition
from weir.logging import get_run_logger

seen: dict[str, object] = {}


@task
def noisy(x: int) -> int:
    get_run_logger().warning("task says %d", x)
    seen["task_run_id"] = runtime.task_run.id
    seen["task_params"] = runtime.task_run.parameters
    return x


@flow(log_prints=True)
def chatty(x: int) -> int:
    get_run_logger().info("flow says hello")
    print("printed", x)
    seen["flow_run_id"] = runtime.flow_run.id
    seen["flow_params"] = runtime.flow_run.parameters
    seen["run_count"] = runtime.flow_run.run_count
    with tags("inner"):
        return noisy(x)


def test_logs_are_durable_when_the_flow_returns(engine) -> None:
    assert chatty(5) == 5
    with WeirClient(engine.address) as client:
        logs = client.list_logs(LogFilter(flow_run_id=seen["flow_run_id"])).items
        by_message = {log.message: log for log in logs}
        assert "flow says hello" in by_message
        assert "printed 5" in by_message
        assert by_message["task says 5"].task_run_id == seen["task_run_id"]
        assert by_message["task says 5"].level == 30
        task_run = client.list_task_runs(TaskRunFilter(flow_run_ids=(seen["flow_run_id"],))).items[0]
        assert "inner" in task_run.tags
    assert seen["flow_params"] == {"x": 5}
    assert seen["task_params"] == {"x": 5}
    assert seen["run_count"] == 1


def test_runtime_outside_a_run_is_empty() -> None:
    assert runtime.flow_run.id is None
    assert runtime.task_run.parameters == {}
    with pytest.raises(FailedPrecondition):
        get_run_logger()


def test_flow_run_logs_cli_shows_them(engine) -> None:
    chatty(7)
    out = subprocess.run(
        [sys.executable, "-m", "weir.cli", "flow-run", "logs", str(seen["flow_run_id"])],
        env={"WEIR_API_ADDRESS": engine.address, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "printed 7" in out.stdout
    assert "task says 7" in out.stdout


@task(log_prints=False)
def quiet() -> None:
    print("not logged")


@task(log_prints=True)
def loud() -> None:
    print("logged by the task")


@flow
def mixed() -> str:
    quiet()
    loud()
    print("flow print, not logged")
    return str(runtime.flow_run.id)


def test_task_log_prints_overrides_the_flow(engine) -> None:
    run_id = mixed()
    with WeirClient(engine.address) as client:
        messages = {log.message for log in client.list_logs(LogFilter(flow_run_id=run_id)).items}
    assert "logged by the task" in messages
    assert "not logged" not in messages
    assert "flow print, not logged" not in messages
