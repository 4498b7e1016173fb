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
            w.name,
            w.work_pool_name,
            w.status or "-",
            ", ".join(w.work_queue_names) or "all",
            str(w.free_slots),
            str(len(w.active_flow_run_ids)),
            fmt_time(w.last_heartbeat),
        )
    console.print(rows)


@worker_app.command("start")
def start_worker(
    pool: Annotated[str, typer.Option("--pool", "-p", help="Work pool to serve (created, type process, if missing).")],
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="Only this queue of the pool (repeatable; default: all).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-l", min=1, help="Runs at once (default: no limit).")] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Worker name (default: <hostname>-<pid>, unique per daemon).")
    ] = None,
    worker_type: Annotated[str, typer.Option("--type", "-t", help="Worker type (only 'process').")] = "process",
    drain_timeout: Annotated[
        float | None,
        typer.Option("--drain-timeout", min=0, help="Seconds a drain waits for active runs (default: no limit)."),
    ] = None,
    fork_server: Annotated[
        bool,
        typer.Option(
            "--fork-server/--no-fork-server",
            help="Fork runs from a warm interpreter that has Weir imported (Linux; default) "
            "instead of starting a new one per run.",
        ),
    ] = True,
) -> None:
    """Run the pool's flow runs, each in a subprocess, as the server assigns them.

    A first SIGINT/SIGTERM drains (no new runs; exit 0 once the active ones
    finished); a second stops the active runs and exits 1.
    """

    from weir.settings import Settings
    from weir.workers import ProcessWorker, worker_env_for
    from weir.workers.worker import ensure_work_pool, log_to_stderr

    if worker_type != "process":
        raise typer.BadParameter(f"unknown worker type {worker_type!r} (only 'process')", param_hint="--type")
    worker_log = log_to_stderr()

    async def work(client: Any) -> int:
        await ensure_work_pool(client, pool)
        worker = ProcessWorker(
            client,
            pool=pool,
            name=name,
            queues=queue or (),
            limit=limit,
            drain_timeout=drain_timeout,
            worker_env=worker_env_for(Settings(), client.address),
            fork_server=fork_server,
        )
        queues = ", ".join(worker.queues) or "all"
        worker_log.info(
            "worker %s serving pool %s (queues: %s, limit: %s); Ctrl-C drains",
            worker.name,
            pool,
            queues,
            limit or "none",
        )
        return await worker.run()

    raise typer.Exit(run(work))
