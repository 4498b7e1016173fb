"""Runs forked from the worker's warm interpreter (``weir.workers.forkserver``) against a real server:
each run still gets its own environment, directory, process group and fresh modules; what cannot be
forked gets a new interpreter; a dead fork server crashes only its runs and comes back."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.workers.conftest import eventually, final_run, pid_alive, unique
from weir.workers.forkserver import fork_server_supported

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not fork_server_supported(), reason="the fork server needs Linux (prctl)"),
]

PROBE = """
import json, os, sys, time
import weir
from weir import flow, task
from weir.task_runners import ProcessPoolTaskRunner

@flow(persist_result=True)
def probe(marker: str, seconds: float = 0.0) -> int:
    # A global of a module the fork server had imported: a run must never see another run's change.
    weir._probe_calls = getattr(weir, "_probe_calls", 0) + 1
    facts = {
        "pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "cwd": os.getcwd(),
        "stage": os.environ.get("STAGE"), "path0": sys.path[0], "calls": weir._probe_calls,
        "hash_randomization": sys.flags.hash_randomization,
    }
    with open(marker + ".tmp", "w") as f:
        json.dump(facts, f)
    os.replace(marker + ".tmp", marker)
    time.sleep(seconds)
    return weir._probe_calls


@task
def square(x: int) -> int:
    return x * x


@flow(persist_result=True, task_runner=ProcessPoolTaskRunner(2))
def squares(n: int) -> list[int]:
    return [f.result() for f in square.map(range(n))]
"""


@pytest.fixture
def probe_project(tmp_path: Path) -> Path:
    project = tmp_path / "probe-project"
    project.mkdir()
    (project / "probe.py").write_text(textwrap.dedent(PROBE))
    return project


def deploy_probe(client: Any, project: Path, pool: str, **fields: Any) -> Any:
    return client.upsert_deployment(
        flow_name="probe",
        name=unique("dep"),
        entrypoint="probe.py:probe",
        working_directory=str(project),
        work_pool_name=pool,
        **fields,
    )


def run_probe(client: Any, deployment: Any, marker: Path, seconds: float = 0.0) -> tuple[str, dict[str, Any]]:
    run_id = client.create_flow_run_from_deployment(
        deployment.id, parameters={"marker": str(marker), "seconds": seconds}
    )
    facts = json.loads(eventually(lambda: marker.exists() and marker.read_text()))
    return run_id, facts


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_runs_are_forked_with_their_own_environment_directory_group_and_modules(
    client: Any, probe_project: Path, start_worker: Any, tmp_path: Path
) -> None:
    pool = unique("pool")
    worker = start_worker("--pool", pool)
    deployment = deploy_probe(client, probe_project, pool, job_variables={"env": {"STAGE": "prod"}})
    seen = []
    for i in range(2):
        run_id, facts = run_probe(client, deployment, tmp_path / f"m{i}")
        run = final_run(client, run_id)
        assert run.state.is_completed(), (run.state, worker.output())
        assert run.state.result() == 1  # the first call in its process, both times
        seen.append(facts)
    first, second = seen
    helper = first["ppid"]
    assert helper != worker.proc.pid and second["ppid"] == helper  # one warm helper, a child per run
    assert "weir.workers.forkserver" in cmdline(helper)
    for facts in seen:
        assert facts["pgid"] == facts["pid"]  # leads its group: a cancel reaches what it started
        assert facts["cwd"] == str(probe_project) and facts["path0"] == str(probe_project)
        assert facts["stage"] == "prod" and facts["calls"] == 1


def test_what_changes_interpreter_start_gets_a_new_interpreter(
    client: Any, probe_project: Path, start_worker: Any, tmp_path: Path
) -> None:
    pool = unique("pool")
    worker = start_worker("--pool", pool)
    deployment = deploy_probe(client, probe_project, pool, job_variables={"env": {"PYTHONHASHSEED": "0"}})
    run_id, facts = run_probe(client, deployment, tmp_path / "m")
    assert final_run(client, run_id).state.is_completed()
    assert facts["ppid"] == worker.proc.pid  # spawned by the worker (setpriv execs in place)
    assert facts["hash_randomization"] == 0  # and the variable took effect at start


def test_no_fork_server_spawns_every_run(client: Any, probe_project: Path, start_worker: Any, tmp_path: Path) -> None:
    pool = unique("pool")
    worker = start_worker("--pool", pool, "--no-fork-server")
    deployment = deploy_probe(client, probe_project, pool)
    run_id, facts = run_probe(client, deployment, tmp_path / "m")
    assert final_run(client, run_id).state.is_completed()
    assert facts["ppid"] == worker.proc.pid


def test_a_killed_fork_server_crashes_its_runs_and_the_next_run_still_starts(
    client: Any, probe_project: Path, start_worker: Any, tmp_path: Path
) -> None:
    pool = unique("pool")
    worker = start_worker("--pool", pool)
    deployment = deploy_probe(client, probe_project, pool)
    run_id, facts = run_probe(client, deployment, tmp_path / "m1", seconds=120)
    eventually(lambda: client.read_flow_run(run_id).state.is_running())
    os.kill(facts["ppid"], signal.SIGKILL)
    run = final_run(client, run_id, timeout=30)
    assert run.state.type.value == "CRASHED", (run.state, worker.output())
    assert run.state.message == f"flow run process exited with code {-signal.SIGKILL}"
    eventually(lambda: not pid_alive(facts["pid"]), timeout=10)  # died with its helper
    next_id, next_facts = run_probe(client, deployment, tmp_path / "m2")
    assert final_run(client, next_id).state.is_completed(), worker.output()
    assert next_facts["ppid"] not in (facts["ppid"], worker.proc.pid)  # a new helper


def test_a_forked_run_can_use_a_process_pool(client: Any, probe_project: Path, start_worker: Any) -> None:
    # Its pool's processes are spawned from a forked child whose __main__ is the fork server's.
    pool = unique("pool")
    worker = start_worker("--pool", pool)
    deployment = client.upsert_deployment(
        flow_name="squares",
        name=unique("dep"),
        entrypoint="probe.py:squares",
        working_directory=str(probe_project),
        work_pool_name=pool,
    )
    run = final_run(client, client.create_flow_run_from_deployment(deployment.id, parameters={"n": 4}))
    assert run.state.is_completed(), (run.state, worker.output())
    assert run.state.result() == [0, 1, 4, 9]
