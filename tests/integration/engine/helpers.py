"""Reading back what the engine wrote, through the public client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from weir.client.types import FlowRun, FlowRunFilter, TaskRun, TaskRunFilter

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def current_flow_run_id() -> str:
    from weir.context import flow_run_ctx

    ctx = flow_run_ctx.get()
    assert ctx is not None, "not inside a flow run"
    return ctx.flow_run_id


def flow_runs_named(client: Any, flow_name: str) -> list[FlowRun]:
    return list(client.iter_flow_runs(FlowRunFilter(flow_names=(flow_name,))))


def only_flow_run(client: Any, flow_name: str) -> FlowRun:
    (run,) = flow_runs_named(client, flow_name)
    return run


def task_runs_of(client: Any, flow_run_id: str) -> list[TaskRun]:
    return list(client.iter_task_runs(TaskRunFilter(flow_run_ids=(flow_run_id,)), page_size=500))


def state_names(client: Any, *, flow_run_id: str | None = None, task_run_id: str | None = None) -> list[str]:
    states = client.iter_states(flow_run_id=flow_run_id, task_run_id=task_run_id)
    return [s.display_name for s in states]


def eventually(probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy (bounded by a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
