"""`weir worker ...`: the worker daemons serving work pools."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from weir.cli._common import OUTPUT_OPTION, OutputFormat, console, fmt_time, print_json, run, table

worker_app = typer.Typer(help="List (and start) workers.", no_args_is_help=True)


@worker_app.command("ls")
def list_workers(
    pool: Annotated[str | None, typer.Option("--pool", "-p", help="Only the workers of this pool.")] = None,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """List the workers the server knows."""

    async def work(client: Any) -> list[Any]:
        return [w async for w in client.iter_workers(pool)]

    workers = run(work)
    if output is OutputFormat.json:
        print_json(workers)
        return
    rows = table("NAME", "POOL", "STATUS", "QUEUES", "FREE SLOTS", "RUNS", "LAST HEARTBEAT")
    for w in workers:
        rows.add_row(
            w.name, w.work_pool_name, w.status or "-", ", ".join(w.work_queue_names) or "all",
            str(w.free_slots), str(len(w.active_flow_run_ids)), fmt_time(w.last_heartbeat),
        )
    console.print(rows)
