"""A flow run whose process dies in the middle of a task is retried, and the retry takes the task run
the dead attempt left RUNNING (it would otherwise be refused as a duplicate and fail the retry)."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.workers.conftest import eventually, final_run, unique
from weir.client.types import StateType, TaskRunFilter

pytestmark = pytest.mark.slow

FLOWS = """
import os, pathlib, time
from weir import flow, runtime, task

@task
def step(marker: str) -> str:
    pathlib.Path(f"{marker}.{runtime.flow_run.run_count}").write_text(str(os.getpid()))
    if runtime.flow_run.run_count == 1:
        time.sleep(300)  # killed here
    return "done"

@flow(persist_result=True)
def interrupted(marker: str) -> str:
    return step(marker)
"""


def test_a_flow_killed_mid_task_is_retried_and_the_retry_runs_the_task(
    client: Any, start_worker: Any, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "flows.py").write_text(textwrap.dedent(FLOWS))
    pool = unique("pool")
    worker = start_worker("--pool", pool)
    deployment = client.upsert_deployment(
        flow_name="interrupted",
        name=unique("dep"),
        entrypoint="flows.py:interrupted",
        working_directory=str(project),
        work_pool_name=pool,
        retries=1,
    )
    marker = tmp_path / "step"
    run_id = client.create_flow_run_from_deployment(deployment.id, parameters={"marker": str(marker)})
    first = Path(f"{marker}.1")
    pid = int(eventually(lambda: first.exists() and first.read_text()))
    by_flow = TaskRunFilter(flow_run_ids=(run_id,))
    # The task's RUNNING has reached the server before the process dies.
    eventually(lambda: [t for t in client.iter_task_runs(by_flow) if t.state.type is StateType.RUNNING])
    os.kill(pid, signal.SIGKILL)

    run = final_run(client, run_id, timeout=60)
    assert run.state.is_completed(), (run.state, worker.output())
    assert run.run_count == 2 and run.state.result() == "done"
    (task_run,) = list(client.iter_task_runs(by_flow))
    assert task_run.state.type is StateType.COMPLETED
    names = [s.display_name for s in client.iter_states(flow_run_id=run_id)]
    assert "AwaitingRetry" in names and names.count("Running") == 2, names
