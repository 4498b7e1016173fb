"""The ``weir`` command line (console script ``weir = "weir.cli:main"``).

Command groups live one per module; the server-hosting commands import the
services only inside their function bodies, so ``weir flow-run ls`` never
loads SQLAlchemy, FastAPI or a service.

``main()`` imports only the module of the command it was asked for (its
first argument), so ``weir server start`` does not pay for the deployment
file models and the other groups; ``weir --help`` and an unknown command
load them all. ``app`` (all commands) is built on first use.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from weir.cli._common import WeirGroup

__all__ = ["app", "build_app", "main"]

#: Command name -> (module under weir.cli, attribute, "command" or "group"), in help order.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "health": ("health", "health", "command"),
    "flow-run": ("flow_runs", "app", "group"),
    "task-run": ("task_runs", "app", "group"),
    "events": ("events", "app", "group"),
    "deployment": ("deployments", "app", "group"),
    "work-pool": ("work_pools", "app", "group"),
    "work-queue": ("work_queues", "app", "group"),
    "worker": ("workers", "worker_app", "group"),
    "deploy": ("deploy", "deploy", "command"),
    "server": ("server", "app", "group"),
    "service": ("service", "service", "command"),
    "gateway": ("gateway", "gateway", "command"),
}


def build_app(names: list[str] | None = None) -> typer.Typer:
    """The CLI with the commands ``names`` (all of them by default)."""
    root = typer.Typer(
        name="weir",
        help="Weir: a workflow orchestrator. Point it at a server with WEIR_API_ADDRESS.",
        cls=WeirGroup,
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
    )
    # A callback keeps it a group even with one command (Typer runs a lone command as the root).
    root.callback()(_root)
    for name in names or list(COMMANDS):
        module, attribute, kind = COMMANDS[name]
        target = getattr(importlib.import_module(f"weir.cli.{module}"), attribute)
        if kind == "group":
            root.add_typer(target, name=name)
        else:
            root.command(name)(target)
    return root


def _root() -> None:
    """Weir: a workflow orchestrator. Point it at a server with WEIR_API_ADDRESS."""


def _requested(argv: list[str]) -> list[str] | None:
    """The one command ``argv`` runs, or None when all are needed (help, nothing, unknown)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in COMMANDS and "--help" not in argv[: argv.index(first)]:
        return [first]
    return None


def main() -> None:
    """Entry point of the ``weir`` console script."""
    build_app(_requested(sys.argv[1:]))()


def __getattr__(name: str) -> Any:
    if name == "app":
        built = globals()["app"] = build_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
