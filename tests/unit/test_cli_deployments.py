"""The deployment, work-pool, work-queue, worker and deploy commands without a server:
usage errors, project-file errors and unreachable servers are one readable line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weir.cli import app

UNREACHABLE = {"WEIR_API_ADDRESS": "127.0.0.1:1", "WEIR_READ_RETRIES": "0"}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["deployment", "ls"],
        ["deployment", "inspect", "etl/nightly"],
        ["deployment", "run", "etl/nightly", "--param", "n=3"],
        ["deployment", "pause", "0b4d2f0e-0000-4000-8000-000000000000"],
        ["deployment", "validate", "etl/nightly", "-o", "json"],
        ["work-pool", "ls"],
        ["work-pool", "create", "local"],
        ["work-queue", "ls", "--pool", "local"],
        ["worker", "ls"],
        ["flow-run", "cancel", "0b4d2f0e-0000-4000-8000-000000000000"],
    ],
)
def test_unreachable_server_is_one_error_line(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(app, args, env=UNREACHABLE)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: unavailable: cannot reach the Weir server at 127.0.0.1:1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deployment", "run", "f/d", "--at", "2030-01-01T09:00"], "has no time zone"),
        (["deployment", "run", "f/d", "--at", "tomorrow"], "not an ISO 8601 time"),
        (["deployment", "run", "f/d", "--at", "2030-01-01T09:00Z", "--in", "5"], "not both"),
        (["deployment", "run", "f/d", "--param", "novalue"], "KEY=VALUE"),
        (["deployment", "run", "f/d", "--params-json", "[1]"], "expected a JSON object"),
        (["deployment", "run", "f/d", "--job-variable", "x"], "KEY=VALUE"),
        (["work-queue", "ls"], "--pool"),
    ],
)
def test_usage_errors(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, args, env=UNREACHABLE)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_work_pool_template_must_be_readable(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["work-pool", "create", "p", "--base-job-template", str(tmp_path / "none.json")], env=UNREACHABLE
    )
    assert result.exit_code == 2
    assert "cannot read" in result.output


def _deploy(runner: CliRunner, tmp_path: Path, text: str, *args: str) -> str:
    (tmp_path / "weir.yaml").write_text(textwrap.dedent(text))
    result = runner.invoke(app, ["deploy", "--file", str(tmp_path / "weir.yaml"), *args], env=UNREACHABLE)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    return line


def test_deploy_without_a_project_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["deploy", "--file", str(tmp_path / "weir.yaml")], env=UNREACHABLE)
    assert result.exit_code == 1
    assert "Error: invalid argument: no project file" in result.output


def test_deploy_names_the_bad_field(runner: CliRunner, tmp_path: Path) -> None:
    line = _deploy(
        runner,
        tmp_path,
        """
        deployments:
          - name: nightly
            entrypoint: flows.py:etl
            work_pool: {job_variables: {}}
        """,
    )
    assert "deployments[0].work_pool.name: Field required" in line


def test_deploy_names_the_bad_schedule(runner: CliRunner, tmp_path: Path) -> None:
    line = _deploy(
        runner,
        tmp_path,
        """
        deployments:
          - name: nightly
            entrypoint: flows.py:etl
            work_pool: {name: local}
            schedules: [{cron: "* * * * *", interval: 60}]
        """,
    )
    assert "deployments[0] (nightly): a schedule has exactly one of interval, cron or rrule" in line
    assert "field: deployments[0].schedules[0]" in line


def test_deploy_reports_a_missing_entrypoint_file(runner: CliRunner, tmp_path: Path) -> None:
    line = _deploy(
        runner,
        tmp_path,
        """
        deployments:
          - name: nightly
            entrypoint: flows.py:etl
            work_pool: {name: local}
        """,
    )
    assert "deployments[0] (nightly): entrypoint 'flows.py:etl': no file" in line


def test_deploy_with_several_deployments_needs_a_choice(runner: CliRunner, tmp_path: Path) -> None:
    text = """
        deployments:
          - {name: a, entrypoint: "flows.py:etl", work_pool: {name: local}}
          - {name: b, entrypoint: "flows.py:etl", work_pool: {name: local}}
        """
    assert "declares 2 deployments (a, b): pick --name or --all" in _deploy(runner, tmp_path, text)
    assert "no deployment 'c' in the project file (it has: a, b)" in _deploy(runner, tmp_path, text, "--name", "c")
