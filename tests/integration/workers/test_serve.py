"""``Flow.serve``: one script deploys its flow and runs its runs until interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.workers.conftest import final_run, unique

pytestmark = pytest.mark.slow

SCRIPT = """
from weir import flow

@flow(name={flow_name!r}, retries=2, persist_result=True)
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {{name}}{{punctuation}}"

if __name__ == "__main__":
    greet.serve({name!r}, interval=3600, tags=["served"], limit=2, description="a served flow")
"""


def write_script(project: Path, flow_name: str, name: str) -> Path:
    path = project / "serve_me.py"
    path.write_text(textwrap.dedent(SCRIPT.format(flow_name=flow_name, name=name)))
    return path


def test_serve_deploys_and_runs_until_interrupted(client: Any, project: Path, start_worker: Any) -> None:
    flow_name, name = unique("greet"), unique("svc")
    script = write_script(project, flow_name, name)
    served = start_worker(str(script), script=True, cwd=project)
    full_name = f"{flow_name}/{name}"
    served.wait_for_output(f"serving deployment {full_name}; run it with: weir deployment run {full_name}")
    deployment = client.read_deployment(name=full_name)
    assert deployment.entrypoint == "serve_me.py:greet"
    assert deployment.working_directory == str(project)
    assert deployment.work_pool_name == f"serve-{flow_name}-{name}"
    assert client.read_work_pool(deployment.work_pool_name).type == "serve"
    assert len(deployment.schedules) == 1 and deployment.tags == ("served",) and deployment.retries == 2
    assert deployment.parameter_schema["required"] == ["name"]
    run_id = client.create_flow_run_from_deployment(deployment.id, parameters={"name": "weir"})
    run = final_run(client, run_id)
    assert run.state.is_completed(), served.output()
    assert run.state.result() == "hello weir!"
    served.signal(signal.SIGINT)
    assert served.wait(30) == 0


def test_serve_without_a_server_says_how_to_get_one(project: Path, env: dict[str, str]) -> None:
    script = write_script(project, unique("greet"), "svc")
    no_server = {k: v for k, v in env.items() if k != "WEIR_API_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, str(script)], env=no_server, cwd=project, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "weir server start" in proc.stderr and "WEIR_API_ADDRESS" in proc.stderr
