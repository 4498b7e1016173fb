"""Adopt mode: ``python -m weir.engine.execute`` runs a flow run that already
exists (a worker's assignment) instead of creating one, and every proposal
carries the assignment's fencing token."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.engine.helpers import flow_runs_named, state_names, unique
from weir.client.types import RunPolicy, State, StateDetails, StateType

FLOW_FILE = """
import pathlib
from weir import flow, task

@task
def double(x: int) -> int:
    return 2 * x

@flow(name={name!r}, persist_result=True)
def main(x: int, marker: str = "") -> int:
    if marker:
        path = pathlib.Path(marker)
        if not path.exists():  # fail the first attempt only
            path.write_text("1")
            raise RuntimeError("first attempt fails")
    return double(x) + 1
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str]:
    """A flow file in its own directory; returns (directory, flow name)."""
    name = unique("adopted")
    (tmp_path / "flows.py").write_text(textwrap.dedent(FLOW_FILE.format(name=name)))
    return tmp_path, name


def assigned_run(client: Any, flow_name: str, token: str, *, retries: int = 0, **parameters: Any) -> Any:
    """A run as the deployments service hands it to a worker: PENDING, holding ``token``."""
    run = client.create_flow_run(
        flow_name=flow_name,
        parameters=parameters,
        state=State(type=StateType.SCHEDULED),
        policy=RunPolicy(retries=retries),
    )
    pending = State(type=StateType.PENDING, details=StateDetails(fencing_token=token))
    assert client.set_flow_run_state(run.id, pending, fencing_token=token).accepted
    return run


def execute(stack: Any, cwd: Path, run_id: str, token: str, entrypoint: str = "flows.py:main") -> int:
    env = {
        **os.environ,
        "WEIR_API_ADDRESS": stack.address,
        "WEIR_HOME": str(cwd / "home"),
        "WEIR_FLOW_RUN_ID": run_id,
        "WEIR_FENCING_TOKEN": token,
        "WEIR_ENTRYPOINT": entrypoint,
    }
    proc = subprocess.run([sys.executable, "-m", "weir.engine.execute"], cwd=cwd, env=env, timeout=60)
    return proc.returncode


def test_adopted_run_completes_with_its_result(stack: Any, client: Any, project: tuple[Path, str]) -> None:
    cwd, name = project
    run = assigned_run(client, name, "tok-a", x=20)
    assert execute(stack, cwd, run.id, "tok-a") == 0
    (after,) = flow_runs_named(client, name)  # no second run was created
    assert after.id == run.id and after.run_count == 1
    assert after.state is not None and after.state.is_completed()
    assert after.state.result() == 41
    assert state_names(client, flow_run_id=run.id) == ["Scheduled", "Pending", "Running", "Completed"]
    running = [s for s in client.iter_states(flow_run_id=run.id) if s.type is StateType.RUNNING]
    assert running[0].details.fencing_token == "tok-a"  # the run stays held while it runs


def test_stale_token_is_rejected_and_the_flow_never_runs(stack: Any, client: Any, project: tuple[Path, str]) -> None:
    cwd, name = project
    marker = cwd / "ran"
    run = assigned_run(client, name, "tok-current", x=1, marker=str(marker))
    assert execute(stack, cwd, run.id, "tok-stale") == 1
    assert not marker.exists()
    after = client.read_flow_run(run.id)
    assert after.state is not None and after.state.is_pending() and after.run_count == 0


def test_adopted_run_retries_by_its_own_policy(stack: Any, client: Any, project: tuple[Path, str]) -> None:
    cwd, name = project
    run = assigned_run(client, name, "tok-r", retries=1, x=5, marker=str(cwd / "attempt"))
    assert execute(stack, cwd, run.id, "tok-r") == 0
    after = client.read_flow_run(run.id)
    assert after.state is not None and after.state.is_completed() and after.run_count == 2
    assert after.state.result() == 11
    names = state_names(client, flow_run_id=run.id)
    assert names == ["Scheduled", "Pending", "Running", "AwaitingRetry", "Running", "Completed"]


def test_failed_flow_exits_1(stack: Any, client: Any, project: tuple[Path, str]) -> None:
    cwd, name = project
    run = assigned_run(client, name, "tok-f", x=5, marker=str(cwd / "attempt"))
    assert execute(stack, cwd, run.id, "tok-f") == 1
    after = client.read_flow_run(run.id)
    assert after.state is not None and after.state.is_failed()
    assert "first attempt fails" in (after.state.message or "")


@pytest.mark.parametrize(
    ("parameters", "entrypoint", "reason"),
    [
        ({"x": "many"}, "flows.py:main", "parameter 'x'"),
        ({"x": 1}, "flows.py:nope", "nope"),
        ({"x": 1}, "missing.py:main", "missing.py"),
    ],
    ids=["bad-parameter", "missing-attribute", "missing-file"],
)
def test_run_that_cannot_start_is_failed_with_the_reason(
    stack: Any, client: Any, project: tuple[Path, str], parameters: dict[str, Any], entrypoint: str, reason: str
) -> None:
    cwd, name = project
    run = assigned_run(client, name, "tok-x", **parameters)
    assert execute(stack, cwd, run.id, "tok-x", entrypoint) == 1
    after = client.read_flow_run(run.id)
    assert after.state is not None and after.state.is_failed()
    assert "could not start" in (after.state.message or "") and reason in (after.state.message or "")


def test_missing_environment_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    proc = subprocess.run(
        [sys.executable, "-m", "weir.engine.execute"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "WEIR_FLOW_RUN_ID" in proc.stderr
