"""`weir work-queue ...`: the queues of a work pool (``--pool`` names the pool)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from weir.cli._common import OUTPUT_OPTION, OutputFormat, console, fmt_time, print_json, run, table
from weir.cli.deployments import fmt_limit

app = typer.Typer(help="Create, list, inspect, pause, resume and delete work queues.", no_args_is_help=True)

_NAME = typer.Argument(metavar="NAME", help="The queue's name.")
_POOL = typer.Option("--pool", "-p", help="The work pool of the queue.")


@app.command("create")
def create_work_queue(
    name: Annotated[str, _NAME],
    pool: Annotated[str, _POOL],
    priority: Annotated[int, typer.Option(min=1, help="Lower numbers are served first (1 is the highest).")] = 1,
    concurrency_limit: Annotated[int, typer.Option(min=0, help="Runs at once from the queue (0: unlimited).")] = 0,
    description: Annotated[str | None, typer.Option(help="What the queue is for.")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the queue's settings if it exists.")] = False,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Create a queue in a work pool."""
    from weir.errors import AlreadyExists, NotFound

    async def work(client: Any) -> Any:
        if not overwrite:
            try:
                await client.read_work_queue(pool, name)
            except NotFound:
                pass
            else:
                raise AlreadyExists(
                    f"work queue {name!r} of pool {pool!r} already exists (add --overwrite to replace its settings)"
                )
        return await client.upsert_work_queue(
            pool,
            name,
            priority=priority,
            concurrency_limit=concurrency_limit,
            paused=paused,
            description=description,
        )

    queue = run(work)
    if output is OutputFormat.json:
        print_json(queue)
        return
    console.print(f"Work queue {queue.name} of pool {queue.work_pool_name} is ready", markup=False)


@app.command("ls")
def list_work_queues(
    pool: Annotated[str, _POOL],
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """List the queues of a work pool, by priority."""

    async def work(client: Any) -> list[Any]:
        return [q async for q in client.iter_work_queues(pool)]

    queues = run(work)
    if output is OutputFormat.json:
        print_json(queues)
        return
    rows = table("NAME", "PRIORITY", "CONCURRENCY", "PAUSED", "DESCRIPTION")
    for q in queues:
        rows.add_row(
            q.name, str(q.priority), fmt_limit(q.concurrency_limit), "yes" if q.paused else "no", q.description or ""
        )
    console.print(rows)


@app.command("inspect")
def inspect_work_queue(
    name: Annotated[str, _NAME],
    pool: Annotated[str, _POOL],
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Show a work queue."""
    queue = run(lambda c: c.read_work_queue(pool, name))
    if output is OutputFormat.json:
        print_json(queue)
        return
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    for label, value in (
        ("name", queue.name),
        ("pool", queue.work_pool_name),
        ("id", queue.id or "-"),
        ("priority", queue.priority),
        ("concurrency", fmt_limit(queue.concurrency_limit)),
        ("paused", "yes" if queue.paused else "no"),
        ("description", queue.description or "-"),
        ("created", fmt_time(queue.created)),
    ):
        info.add_row(label, escape(str(value)))
    console.print(info)


@app.command("pause")
def pause_work_queue(
    name: Annotated[str, _NAME],
    pool: Annotated[str, _POOL],
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Hand no more of the queue's runs to workers until it is resumed."""
    queue = run(lambda c: c.pause_work_queue(pool, name))
    if output is OutputFormat.json:
        print_json(queue)
        return
    console.print(f"Paused work queue {name} of pool {pool}", markup=False)


@app.command("resume")
def resume_work_queue(
    name: Annotated[str, _NAME],
    pool: Annotated[str, _POOL],
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Hand the queue's runs to workers again."""
    queue = run(lambda c: c.resume_work_queue(pool, name))
    if output is OutputFormat.json:
        print_json(queue)
        return
    console.print(f"Resumed work queue {name} of pool {pool}", markup=False)


@app.command("delete")
def delete_work_queue(name: Annotated[str, _NAME], pool: Annotated[str, _POOL]) -> None:
    """Delete a work queue (a pool's 'default' queue stays)."""
    run(lambda c: c.delete_work_queue(pool, name))
    console.print(f"Deleted work queue {name} of pool {pool}", markup=False)
