"""The CLI renders failures as one readable line and exit code 1."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from weir.cli import app
from weir.cli._common import describe_error
from weir.errors import InvalidArgument, NotFound

UNREACHABLE = {"WEIR_API_ADDRESS": "127.0.0.1:1", "WEIR_READ_RETRIES": "0"}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["health"],
        ["flow-run", "ls"],
        ["flow-run", "inspect", "0b4d2f0e-0000-4000-8000-000000000000"],
        ["flow-run", "set-state", "0b4d2f0e-0000-4000-8000-000000000000", "cancelled"],
        ["events", "ls", "--output", "json"],
        ["task-run", "ls", "--flow-run", "x"],
    ],
)
def test_unreachable_server_is_one_error_line(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(app, args, env=UNREACHABLE)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("Error: unavailable: cannot reach the Weir server at 127.0.0.1:1")
    assert "Traceback" not in result.output


def test_no_server_configured(runner: CliRunner) -> None:
    result = runner.invoke(app, ["flow-run", "ls"], env={"WEIR_API_ADDRESS": ""})
    assert result.exit_code == 1
    assert "Error: unavailable: no Weir server configured: set WEIR_API_ADDRESS" in result.output


def test_bad_state_type_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["flow-run", "ls", "--state", "done"], env=UNREACHABLE)
    assert result.exit_code == 2
    assert "unknown state type 'done'" in result.output


def test_bad_param_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["flow-run", "create", "--flow", "etl", "--param", "novalue"], env=UNREACHABLE)
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output


def test_describe_error_names_the_kind_and_field() -> None:
    assert describe_error(NotFound("flow run 1234 not found")) == "not found: flow run 1234 not found"
    assert describe_error(InvalidArgument("must be positive", field="limit")) == (
        "invalid argument: must be positive (field: limit)"
    )


def test_help_lists_every_group(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("health", "flow-run", "task-run", "events", "server", "service"):
        assert name in result.output
