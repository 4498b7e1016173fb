"""`weir task-run ...`: the task runs of a flow run."""

from __future__ import annotations

from typing import Annotated

import typer

from weir.cli._common import (
    OUTPUT_OPTION,
    OutputFormat,
    console,
    fmt_duration,
    fmt_state,
    fmt_time,
    parse_state_types,
    print_json,
    run,
    table,
    take,
)

app = typer.Typer(help="List task runs.", no_args_is_help=True)


@app.command("ls")
def list_task_runs(
    flow_run: Annotated[str, typer.Option("--flow-run", help="The flow run whose task runs to list.")],
    state: Annotated[list[str] | None, typer.Option("--state", help="State type (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many task runs.")] = 200,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """List the task runs of one flow run."""
    from weir.client.types import TaskRunFilter

    flt = TaskRunFilter(flow_run_ids=(flow_run,), state_types=parse_state_types(state))
    task_runs = run(lambda c: take(c.iter_task_runs(flt, page_size=min(limit, 200)), limit))
    if output is OutputFormat.json:
        print_json(task_runs)
        return
    rows = table("ID", "NAME", "STATE", "START", "DURATION", "RUNS")
    for t in task_runs:
        rows.add_row(
            t.id,
            t.name,
            fmt_state(t.state),
            fmt_time(t.start_time),
            fmt_duration(t.total_run_time_seconds),
            str(t.run_count),
        )
    console.print(rows)
