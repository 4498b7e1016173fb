"""``weir worker start`` against a real server: runs pushed to it complete,
cancels stop their process, the limit holds, SIGTERM drains, and the run's
process dies with a SIGKILLed worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.workers.conftest import eventually, final_run, pid_alive, unique
from weir.client.types import State, StateType

pytestmark = pytest.mark.slow


def deploy(client: Any, project: Path, pool: str, function: str, **fields: Any) -> Any:
    return client.upsert_deployment(
        flow_name=function,
        name=unique("dep"),
        entrypoint=f"flows.py:{function}",
        working_directory=str(project),
        work_pool_name=pool,
        **fields,
    )


def run_of(client: Any, deployment: Any, **parameters: Any) -> str:
    return client.create_flow_run_from_deployment(deployment.id, parameters=parameters)


def wait_for_pid(marker: Path, timeout: float = 30.0) -> int:
    return int(eventually(lambda: marker.exists() and marker.read_text(), timeout=timeout))


def test_the_worker_creates_its_pool_and_runs_what_is_pushed(client: Any, project: Path, start_worker: Any) -> None:
    pool = unique("pool")
    worker = start_worker("--pool", pool, "--limit", "4", "--name", "w-complete")
    assert client.read_work_pool(pool).type == "process"
    deployment = deploy(client, project, pool, "add")
    run_ids = [run_of(client, deployment, x=i) for i in range(3)]
    for i, run_id in enumerate(run_ids):
        run = final_run(client, run_id)
        assert run.state.is_completed(), (run.state, worker.output())
        assert run.state.result() == i + 1
        assert run.deployment_id == deployment.id
    (listed,) = [w for w in client.list_workers(pool).items if w.name == "w-complete"]
    assert listed.status == "ONLINE"
    # The runs' output reaches the worker's stdout, prefixed with the run.
    worker.wait_for_output(f"[add/{run_ids[0][:8]}]")
    assert "adding 0 and 1" in worker.output()


def test_cancelling_a_run_stops_its_process(client: Any, project: Path, start_worker: Any, tmp_path: Path) -> None:
    pool = unique("pool")
    worker = start_worker("--pool", pool)
    deployment = deploy(client, project, pool, "sleepy", job_variables={"terminate_grace_seconds": 5})
    marker = tmp_path / "pid"
    run_id = run_of(client, deployment, seconds=120, marker=str(marker))
    pid = wait_for_pid(marker)
    eventually(lambda: client.read_flow_run(run_id).state.is_running())
    assert client.set_flow_run_state(run_id, State(type=StateType.CANCELLING)).accepted
    run = final_run(client, run_id, timeout=30)
    assert run.state.type is StateType.CANCELLED, (run.state, worker.output())
    eventually(lambda: not pid_alive(pid), timeout=10)


def test_a_process_that_dies_crashes_its_run(client: Any, project: Path, start_worker: Any) -> None:
    pool = unique("pool")
    start_worker("--pool", pool)
    deployment = deploy(client, project, pool, "dies")
    run = final_run(client, run_of(client, deployment, code=7))
    assert run.state.type is StateType.CRASHED
    assert run.state.message == "flow run process exited with code 7"


def test_a_crashed_run_with_retries_left_runs_again(client: Any, project: Path, start_worker: Any) -> None:
    pool = unique("pool")
    start_worker("--pool", pool)
    deployment = deploy(client, project, pool, "dies", retries=1)
    run_id = run_of(client, deployment, code=3)
    run = final_run(client, run_id)
    assert run.state.type is StateType.CRASHED and run.run_count == 2
    names = [s.display_name for s in client.iter_states(flow_run_id=run_id)]
    assert names.count("Running") == 2 and "AwaitingRetry" in names, names


def test_the_limit_holds(client: Any, project: Path, start_worker: Any, tmp_path: Path) -> None:
    pool = unique("pool")
    start_worker("--pool", pool, "--limit", "1")
    deployment = deploy(client, project, pool, "sleepy")
    run_ids = [run_of(client, deployment, seconds=1.0, marker=str(tmp_path / f"m{i}")) for i in range(2)]
    first, second = sorted((final_run(client, r) for r in run_ids), key=lambda r: r.start_time)
    assert first.state.is_completed() and second.state.is_completed()
    assert first.end_time <= second.start_time  # one after the other, never together


def test_sigterm_drains_takes_nothing_new_and_exits_0(
    client: Any, project: Path, start_worker: Any, tmp_path: Path
) -> None:
    pool = unique("pool")
    worker = start_worker("--pool", pool, "--limit", "2")
    deployment = deploy(client, project, pool, "sleepy")
    marker = tmp_path / "pid"
    active = run_of(client, deployment, seconds=3, marker=str(marker))
    wait_for_pid(marker)
    worker.signal(signal.SIGTERM)
    worker.wait_for_output("draining")
    later = run_of(client, deployment, seconds=0, marker=str(tmp_path / "later"))
    assert worker.wait(30) == 0
    assert final_run(client, active).state.is_completed()
    # The run created during the drain was never taken: it waits for another worker.
    time.sleep(1.0)
    assert client.read_flow_run(later).state.type is StateType.SCHEDULED
    assert not (tmp_path / "later").exists()


def test_a_second_sigterm_stops_the_runs_and_crashes_them(
    client: Any, project: Path, start_worker: Any, tmp_path: Path
) -> None:
    pool = unique("pool")
    worker = start_worker("--pool", pool)
    deployment = deploy(client, project, pool, "sleepy", job_variables={"terminate_grace_seconds": 2})
    marker = tmp_path / "pid"
    run_id = run_of(client, deployment, seconds=120, marker=str(marker))
    pid = wait_for_pid(marker)
    eventually(lambda: client.read_flow_run(run_id).state.is_running())
    worker.signal(signal.SIGTERM)
    worker.wait_for_output("draining")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 1
    assert not pid_alive(pid)
    run = client.read_flow_run(run_id)
    # The run's process records its own crash on SIGTERM (and runs its on_crashed hooks); the worker's
    # proposal only lands when the process could not.
    assert run.state.type is StateType.CRASHED
    assert run.state.message.startswith(("the worker stopped", "the process received signal 15"))


def test_the_run_process_dies_with_a_sigkilled_worker(
    client: Any, project: Path, start_worker: Any, tmp_path: Path
) -> None:
    pool = unique("pool")
    worker = start_worker("--pool", pool)
    deployment = deploy(client, project, pool, "sleepy")
    marker = tmp_path / "pid"
    run_id = run_of(client, deployment, seconds=120, marker=str(marker))
    pid = wait_for_pid(marker)
    worker.signal(signal.SIGKILL)
    worker.wait()
    eventually(lambda: not pid_alive(pid), timeout=10)
    # Orchestration's sweeper finds the run's heartbeats stopped.
    assert final_run(client, run_id, timeout=30).state.type is StateType.CRASHED


def test_unknown_worker_type_is_a_usage_error(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "weir.cli", "worker", "start", "--pool", "p", "--type", "docker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "docker" in proc.stderr


def test_a_pool_of_another_type_is_refused(client: Any, env: dict[str, str]) -> None:
    pool = unique("pool")
    template = {"job_configuration": {}, "variables": {"type": "object", "properties": {}}}
    client.upsert_work_pool(pool, type="kubernetes", base_job_template=template)
    proc = subprocess.run(
        [sys.executable, "-m", "weir.cli", "worker", "start", "--pool", pool],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1 and "kubernetes" in proc.stderr and "Traceback" not in proc.stderr
