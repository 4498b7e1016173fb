"""`weir <command>` loads only that command's module; help and unknown commands load all."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from weir.cli import COMMANDS, _requested, build_app


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["server", "start", "--grpc-port", "1"], ["server"]),
        (["health"], ["health"]),
        (["deploy", "--help"], ["deploy"]),
        ([], None),
        (["--help"], None),
        (["--help", "server"], None),
        (["no-such-command"], None),
    ],
)
def test_the_requested_command(argv: list[str], expected: list[str] | None) -> None:
    assert _requested(argv) == expected


def test_an_app_of_one_command_still_takes_its_name() -> None:
    # Typer runs a lone command as the root unless the app has a callback: `weir health`
    # must not become `weir` with "health" as an unexpected argument.
    result = CliRunner().invoke(build_app(["health"]), ["health", "--help"])
    assert result.exit_code == 0, result.output
    assert "grpc.health.v1" in result.output


def test_the_full_app_lists_every_command() -> None:
    result = CliRunner().invoke(build_app(), ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_a_command_does_not_import_the_other_command_modules() -> None:
    probe = (
        "import sys\n"
        "sys.argv = ['weir', 'server', '--help']\n"
        "from weir.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('weir.cli.') and not m.startswith('weir.cli._')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['weir.cli.server']"
