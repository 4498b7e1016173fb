"""`weir work-pool ...`: create, list, inspect, pause, resume and delete work pools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from weir.cli._common import OUTPUT_OPTION, OutputFormat, console, fmt_time, print_json, run, table, take
from weir.cli.deployments import fmt_limit

app = typer.Typer(help="Create, list, inspect, pause, resume and delete work pools.", no_args_is_help=True)

_NAME = typer.Argument(metavar="NAME", help="The work pool's name.")


def _read_template(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--base-job-template") from None
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{path} is not JSON or YAML: {exc}", param_hint="--base-job-template") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold an object", param_hint="--base-job-template")
    return data


@app.command("create")
def create_work_pool(
    name: Annotated[str, _NAME],
    type: Annotated[str, typer.Option("--type", help="Worker type that serves the pool.")] = "process",
    base_job_template: Annotated[
        Path | None, typer.Option("--base-job-template", help="JSON or YAML file: job_configuration + variables.")
    ] = None,
    concurrency_limit: Annotated[int, typer.Option(min=0, help="Runs at once in the pool (0: unlimited).")] = 0,
    description: Annotated[str | None, typer.Option(help="What the pool is for.")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the pool's settings if it exists.")] = False,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Create a work pool (with its queue 'default')."""
    from weir.errors import AlreadyExists, NotFound

    template = _read_template(base_job_template)

    async def work(client: Any) -> Any:
        if not overwrite:
            try:
                await client.read_work_pool(name)
            except NotFound:
                pass
            else:
                raise AlreadyExists(f"work pool {name!r} already exists (add --overwrite to replace its settings)")
        return await client.upsert_work_pool(
            name,
            type=type,
            base_job_template=template,
            paused=paused,
            concurrency_limit=concurrency_limit,
            description=description,
        )

    pool = run(work)
    if output is OutputFormat.json:
        print_json(pool)
        return
    console.print(f"Work pool {pool.name} is ready (type {pool.type})", markup=False)


@app.command("ls")
def list_work_pools(
    limit: Annotated[int, typer.Option(min=1, help="At most this many pools.")] = 100,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """List work pools."""
    pools = run(lambda c: take(c.iter_work_pools(page_size=min(limit, 200)), limit))
    if output is OutputFormat.json:
        print_json(pools)
        return
    rows = table("NAME", "TYPE", "CONCURRENCY", "PAUSED", "DESCRIPTION")
    for p in pools:
        rows.add_row(p.name, p.type, fmt_limit(p.concurrency_limit), "yes" if p.paused else "no", p.description or "")
    console.print(rows)


@app.command("inspect")
def inspect_work_pool(
    name: Annotated[str, _NAME],
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Show a work pool, its queues and its workers."""

    async def work(client: Any) -> tuple[Any, list[Any], list[Any]]:
        pool = await client.read_work_pool(name)
        queues = [q async for q in client.iter_work_queues(name)]
        workers = [w async for w in client.iter_workers(name)]
        return pool, queues, workers

    pool, queues, workers = run(work)
    if output is OutputFormat.json:
        print_json({"work_pool": pool, "work_queues": queues, "workers": workers})
        return
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    for label, value in (
        ("name", pool.name),
        ("id", pool.id or "-"),
        ("type", pool.type),
        ("paused", "yes" if pool.paused else "no"),
        ("concurrency", fmt_limit(pool.concurrency_limit)),
        ("default queue", pool.default_queue_name or "default"),
        ("description", pool.description or "-"),
        ("base job template", json.dumps(pool.base_job_template, indent=2) if pool.base_job_template else "-"),
        ("created", fmt_time(pool.created)),
    ):
        info.add_row(label, escape(str(value)))
    console.print(info)
    rows = table("QUEUE", "PRIORITY", "CONCURRENCY", "PAUSED", title="Queues")
    for q in queues:
        rows.add_row(q.name, str(q.priority), fmt_limit(q.concurrency_limit), "yes" if q.paused else "no")
    console.print(rows)
    if workers:
        names = ", ".join(f"{w.name} ({w.status})" for w in workers)
        console.print(f"{len(workers)} worker(s): {names}", markup=False)


@app.command("pause")
def pause_work_pool(
    name: Annotated[str, _NAME], output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table
) -> None:
    """Hand no more of the pool's runs to workers until it is resumed."""
    pool = run(lambda c: c.pause_work_pool(name))
    if output is OutputFormat.json:
        print_json(pool)
        return
    console.print(f"Paused work pool {name}", markup=False)


@app.command("resume")
def resume_work_pool(
    name: Annotated[str, _NAME], output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table
) -> None:
    """Hand the pool's runs to workers again."""
    pool = run(lambda c: c.resume_work_pool(name))
    if output is OutputFormat.json:
        print_json(pool)
        return
    console.print(f"Resumed work pool {name}", markup=False)


@app.command("delete")
def delete_work_pool(name: Annotated[str, _NAME]) -> None:
    """Delete a work pool and its queues."""
    run(lambda c: c.delete_work_pool(name))
    console.print(f"Deleted work pool {name}", markup=False)
