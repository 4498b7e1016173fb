"""`weir work-pool`, `work-queue`, `deploy`, `deployment`, `worker` and `flow-run cancel`
against a real server, through typer's CliRunner."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.integration.deployments_api.conftest import unique
from weir.cli import app
from weir.client.types import FlowRunFilter, State, StateType

FLOW_FILE = """
from weir import flow

@flow(name="{flow_name}", retries=1, retry_delay_seconds=5)
def etl(day: str, limit: int = 10) -> int:
    return limit
"""

PROJECT = """
deployments:
  - name: nightly
    entrypoint: flows/etl.py:etl
    work_pool:
      name: {pool}
      job_variables: {{env: {{LOG_LEVEL: debug}}}}
    schedules:
      - cron: "0 3 * * *"
        timezone: Europe/Paris
      - interval: 3600
        active: false
    parameters: {{day: mon}}
    tags: [prod]
    description: the nightly load
    version: "1.4"
    concurrency_limit: 1
    collision_strategy: CANCEL_NEW
  - name: adhoc
    entrypoint: flows/etl.py:etl
    work_pool: {{name: {pool}}}
"""


class Cli:
    def __init__(self, address: str) -> None:
        self.runner = CliRunner()
        self.env = {"WEIR_API_ADDRESS": address}

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = self.runner.invoke(app, list(args), env=self.env)
        assert result.exit_code == code, f"{args}: exit {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def error(self, *args: str) -> str:
        """The one error line of a failing command."""
        result = self(*args, code=1)
        (line,) = [line for line in result.output.splitlines() if line.strip()]
        assert line.startswith("Error: ")
        return line


@pytest.fixture(scope="module")
def cli(stack: Any) -> Cli:
    return Cli(stack.address)


@pytest.fixture
def project(tmp_path: Path, pool: str) -> tuple[Path, str]:
    flow_name = unique("cli-etl")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "etl.py").write_text(FLOW_FILE.format(flow_name=flow_name))
    (tmp_path / "weir.yaml").write_text(PROJECT.format(pool=pool))
    return tmp_path, flow_name


def test_work_pool_commands(cli: Cli, tmp_path: Path) -> None:
    name = unique("pool")
    template = {
        "job_configuration": {"env": "{{ env }}"},
        "variables": {"type": "object", "properties": {"env": {"type": "object", "default": {}}}},
    }
    (tmp_path / "template.json").write_text(json.dumps(template))
    assert "is ready" in cli("work-pool", "create", name, "--base-job-template", str(tmp_path / "template.json")).stdout
    assert "already exists (add --overwrite" in cli.error("work-pool", "create", name)
    pool = cli.json("work-pool", "create", name, "--overwrite", "--concurrency-limit", "2", "--description", "d")
    assert (pool["concurrency_limit"], pool["description"]) == (2, "d")
    assert name in [p["name"] for p in cli.json("work-pool", "ls")]
    assert name in cli("work-pool", "ls").stdout

    shown = cli.json("work-pool", "inspect", name)
    assert [q["name"] for q in shown["work_queues"]] == ["default"]
    assert shown["workers"] == []
    assert "default" in cli("work-pool", "inspect", name).stdout

    assert cli.json("work-pool", "pause", name)["paused"] is True
    assert cli.json("work-pool", "inspect", name)["work_pool"]["paused"] is True
    cli("work-pool", "resume", name)
    assert cli.json("work-pool", "inspect", name)["work_pool"]["paused"] is False
    assert f"Deleted work pool {name}" in cli("work-pool", "delete", name).stdout
    assert cli.error("work-pool", "inspect", name).startswith("Error: not found:")


def test_work_queue_commands(cli: Cli, pool: str) -> None:
    queue = cli.json("work-queue", "create", "high", "--pool", pool, "--priority", "2", "--concurrency-limit", "1")
    assert (queue["name"], queue["priority"], queue["concurrency_limit"]) == ("high", 2, 1)
    assert "already exists" in cli.error("work-queue", "create", "high", "--pool", pool)
    assert [q["name"] for q in cli.json("work-queue", "ls", "--pool", pool)] == ["default", "high"]
    assert cli.json("work-queue", "inspect", "high", "--pool", pool)["priority"] == 2
    assert cli.json("work-queue", "pause", "high", "--pool", pool)["paused"] is True
    assert cli.json("work-queue", "inspect", "high", "--pool", pool)["paused"] is True
    cli("work-queue", "resume", "high", "--pool", pool)
    cli("work-queue", "delete", "high", "--pool", pool)
    assert cli.error("work-queue", "inspect", "high", "--pool", pool).startswith("Error: not found:")


def test_worker_ls(cli: Cli, pool: str) -> None:
    assert cli.json("worker", "ls", "--pool", pool) == []
    assert "NAME" in cli("worker", "ls", "--pool", pool).stdout


def test_deploy_from_a_project_file(cli: Cli, project: tuple[Path, str], pool: str) -> None:
    root, flow_name = project
    deployed = cli.json("deploy", "--file", str(root / "weir.yaml"), "--all")
    assert [f"{d['flow_name']}/{d['name']}" for d in deployed] == [f"{flow_name}/nightly", f"{flow_name}/adhoc"]
    nightly = deployed[0]
    assert nightly["entrypoint"] == "flows/etl.py:etl"
    assert nightly["working_directory"] == str(root.resolve())
    assert nightly["job_variables"] == {"env": {"LOG_LEVEL": "debug"}}
    assert nightly["parameters"] == {"day": "mon"}
    assert nightly["parameter_schema"]["required"] == ["day"]
    assert (nightly["retries"], nightly["retry_delay_seconds"]) == (1, [5.0])
    assert (nightly["concurrency_limit"], nightly["collision_strategy"]) == (1, "CANCEL_NEW")
    assert [(s["cron"], s["timezone"], s["active"]) for s in nightly["schedules"]] == [
        ("0 3 * * *", "Europe/Paris", True),
        (None, "UTC", False),
    ]
    # Deploying one by name again replaces it, same id.
    again = cli.json("deploy", "--file", str(root / "weir.yaml"), "--name", "nightly")
    assert [d["id"] for d in again] == [nightly["id"]]
    assert f"{flow_name}/adhoc" in cli("deploy", "--file", str(root / "weir.yaml"), "--name", "adhoc").stdout


def test_deploy_to_a_missing_pool(cli: Cli, project: tuple[Path, str]) -> None:
    root, _ = project
    (root / "weir.yaml").write_text(PROJECT.format(pool="no-such-pool"))
    line = cli.error("deploy", "--file", str(root / "weir.yaml"), "--name", "adhoc")
    assert "invalid argument: work pool 'no-such-pool' does not exist" in line


def test_deployment_commands(cli: Cli, project: tuple[Path, str], client: Any) -> None:
    root, flow_name = project
    cli("deploy", "--file", str(root / "weir.yaml"), "--all")
    full = f"{flow_name}/nightly"
    listed = cli.json("deployment", "ls", "--flow", flow_name)
    assert sorted(d["name"] for d in listed) == ["adhoc", "nightly"]
    assert full in cli("deployment", "ls", "--flow", flow_name).stdout
    shown = cli.json("deployment", "inspect", full)
    assert cli.json("deployment", "inspect", shown["id"]) == shown
    assert "flows/etl.py:etl" in cli("deployment", "inspect", full).stdout

    run = cli.json("deployment", "run", full, "--param", "limit=3", "--tag", "cli", "--in", "3600")
    assert (run["deployment_id"], run["parameters"]) == (shown["id"], {"day": "mon", "limit": 3})
    assert "cli" in run["tags"] and run["state"]["type"] == "SCHEDULED"
    run_id = cli("deployment", "run", full, "--params-json", '{"day": "tue"}', "--at", "2030-01-01T00:00:00Z").stdout
    assert client.read_flow_run(run_id.strip()).parameters == {"day": "tue"}

    assert "invalid argument" in cli.error("deployment", "run", full, "--param", 'limit="many"')
    assert cli.error("deployment", "inspect", f"{flow_name}/none").startswith("Error: not found:")

    assert cli.json("deployment", "pause", full)["paused"] is True
    assert cli.error("deployment", "run", full).startswith("Error: failed precondition:")
    cli("deployment", "resume", full)

    assert "valid" in cli("deployment", "validate", full).stdout
    bad = cli("deployment", "validate", full, "--job-variable", 'env={"A": 1}', code=1).stdout
    assert "Invalid" in bad and "env" in bad
    assert cli.json("deployment", "validate", full)["valid"] is True

    assert f"Deleted deployment {full}" in cli("deployment", "delete", full).stdout
    assert cli.error("deployment", "inspect", full).startswith("Error: not found:")


def _complete_runs(client: Any, deployment_id: str, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        for run in client.iter_flow_runs(FlowRunFilter(deployment_id=deployment_id)):
            if run.state and run.state.type is StateType.SCHEDULED:
                for kind in (StateType.PENDING, StateType.RUNNING, StateType.COMPLETED):
                    client.set_flow_run_state(run.id, State(type=kind))


def test_deployment_run_watch(cli: Cli, project: tuple[Path, str], client: Any) -> None:
    root, flow_name = project
    (deployment,) = cli.json("deploy", "--file", str(root / "weir.yaml"), "--name", "nightly")
    stop = threading.Event()
    worker = threading.Thread(target=_complete_runs, args=(client, deployment["id"], stop), daemon=True)
    worker.start()
    try:
        out = cli("deployment", "run", f"{flow_name}/nightly", "--watch").stdout
    finally:
        stop.set()
        worker.join()
    assert "waiting for it to finish" in out
    assert "Completed" in out


def test_flow_run_cancel(cli: Cli, pool: str, client: Any) -> None:
    deployment = client.upsert_deployment(flow_name=unique("flow"), name="d", work_pool_name=pool)
    scheduled = client.create_flow_run_from_deployment(deployment.id)
    assert "is now Cancelled" in cli("flow-run", "cancel", scheduled).stdout
    assert "already ended Cancelled; there is nothing to cancel" in cli.error("flow-run", "cancel", scheduled)

    running = client.create_flow_run_from_deployment(deployment.id)
    for kind in (StateType.PENDING, StateType.RUNNING):
        client.set_flow_run_state(running, State(type=kind))
    assert "is now Cancelling" in cli("flow-run", "cancel", running).stdout
    assert "already cancelling" in cli.error("flow-run", "cancel", running)
    assert cli.error("flow-run", "cancel", "0b4d2f0e-0000-4000-8000-000000000000").startswith("Error: not found:")
