"""`weir events ...`: stored events and a live tail."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from weir.cli._common import OUTPUT_OPTION, OutputFormat, console, fmt_time, print_json, run, table, take

app = typer.Typer(help="List stored events or follow live ones.", no_args_is_help=True)

_RESOURCE = typer.Option("--resource", help="Resource id (repeatable).")
_EVENT = typer.Option("--event", help="Event name prefix, e.g. weir.flow-run. (repeatable).")


def _filter(resource: list[str] | None, event: list[str] | None) -> Any:
    from weir.client.types import EventFilter

    return EventFilter(event_prefixes=tuple(event or ()), resource_ids=tuple(resource or ()))


@app.command("ls")
def list_events(
    resource: Annotated[list[str] | None, _RESOURCE] = None,
    event: Annotated[list[str] | None, _EVENT] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many events.")] = 50,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """List stored events, newest first."""
    flt = _filter(resource, event)
    events = run(lambda c: take(c.iter_events(flt, page_size=min(limit, 500)), limit))
    if output is OutputFormat.json:
        print_json(events)
        return
    rows = table("OCCURRED", "EVENT", "RESOURCE", "ID")
    for e in events:
        rows.add_row(fmt_time(e.occurred), e.event, e.resource_id, e.id)
    console.print(rows)


@app.command("tail")
def tail_events(
    resource: Annotated[list[str] | None, _RESOURCE] = None,
    event: Annotated[list[str] | None, _EVENT] = None,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Print live events as they happen, until Ctrl-C (json: one object per line)."""
    flt = _filter(resource, event)

    async def work(client: Any) -> None:
        async for e in client.subscribe_events(flt):
            if output is OutputFormat.json:
                typer.echo(json.dumps(e.model_dump(mode="json")))
            else:
                console.print(
                    f"{fmt_time(e.occurred)}  [bold]{escape(e.event)}[/bold]  {escape(e.resource_id)}",
                    soft_wrap=True,
                )

    try:
        run(work)
    except KeyboardInterrupt:
        # Ctrl-C is how a tail ends; not an error.
        raise typer.Exit(0) from None
