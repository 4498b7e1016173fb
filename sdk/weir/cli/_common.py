"""What every CLI command shares: running a client call, output, errors.

A command body is an ``async def work(client)`` handed to :func:`run`; output
goes through :func:`print_json` (``--output json``, machine-readable, never
wrapped) or a rich table; a ``WeirError`` anywhere becomes one red line on
stderr and exit code 1 (see :class:`WeirGroup`).
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from weir.errors import InvalidArgument, WeirError

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


class OutputFormat(enum.StrEnum):
    table = "table"
    json = "json"


OUTPUT_OPTION = typer.Option("--output", "-o", help="table (default) or json.")


def describe_error(exc: WeirError) -> str:
    """``not found: flow run 1234 ...``: the kind of error, then its message."""
    kind = re.sub(r"(?<!^)(?=[A-Z])", " ", type(exc).__name__).lower()
    text = f"{kind}: {exc.message}"
    if exc.field and exc.field not in exc.message:
        text += f" (field: {exc.field})"
    return text


def print_error(exc: WeirError) -> None:
    # soft_wrap: one line however long, so it stays greppable.
    err_console.print(f"Error: {describe_error(exc)}", style="red", markup=False, soft_wrap=True)


class WeirGroup(TyperGroup):
    """Turns a WeirError from any command into ``Error: ...`` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WeirError as exc:
            print_error(exc)
            raise typer.Exit(1) from None


def run(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(client)`` with a client for the configured server."""
    from weir.client import AsyncWeirClient
    from weir.settings import Settings

    try:
        # One CLI invocation is one process: read the environment now.
        settings = Settings()
    except ValidationError as exc:
        raise InvalidArgument(f"invalid WEIR_* setting: {exc.errors()[0]['msg']}") from None

    async def main() -> T:
        async with AsyncWeirClient.from_settings(settings) as client:
            return await work(client)

    return asyncio.run(main())


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    """Machine output: plain JSON on stdout (no rich markup, no wrapping)."""
    typer.echo(json.dumps(to_jsonable(value), indent=2, default=str))


def table(*columns: str, title: str | None = None) -> Table:
    """A listing table; ``ID`` columns never truncate, so ids can be copied."""
    out = Table(title=title)
    for name in columns:
        if name == "ID":
            out.add_column(name, no_wrap=True, min_width=36)
        else:
            out.add_column(name, overflow="fold")
    return out


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


_STATE_STYLES = {
    "COMPLETED": "green",
    "FAILED": "red",
    "CRASHED": "bright_red",
    "CANCELLED": "grey50",
    "CANCELLING": "grey50",
    "RUNNING": "cyan",
    "PENDING": "yellow",
    "SCHEDULED": "yellow",
    "PAUSED": "magenta",
}


def fmt_state(state: Any) -> str:
    """A state's display name, coloured by its type (rich markup)."""
    if state is None:
        return "-"
    style = _STATE_STYLES.get(state.type.value, "white")
    return f"[{style}]{state.display_name}[/{style}]"


def parse_state_types(values: Iterable[str] | None) -> tuple[Any, ...]:
    """``--state completed --state FAILED`` as StateTypes (bad names: usage error)."""
    from weir.client.types import StateType

    try:
        return tuple(StateType.parse(v) for v in values or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--state") from None


async def take(source: Any, limit: int) -> list[Any]:
    """The first ``limit`` items of an async iterator (closing it after)."""
    items: list[Any] = []
    if limit <= 0:
        return items
    try:
        async for item in source:
            items.append(item)
            if len(items) >= limit:
                break
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
    return items
