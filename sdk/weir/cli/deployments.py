"""`weir deployment ...`: list, inspect, run, pause, resume, delete and check deployments.

A deployment is named by its full name ``flow/deployment`` or by its id.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from weir.cli._common import (
    OUTPUT_OPTION,
    OutputFormat,
    console,
    fmt_state,
    fmt_time,
    print_json,
    run,
    table,
    take,
)
from weir.cli.flow_runs import parse_assignment

app = typer.Typer(
    help="List, inspect, run, pause, resume and delete deployments (NAME is flow/deployment or an id).",
    no_args_is_help=True,
)

_NAME = typer.Argument(metavar="NAME", help="flow/deployment, or the deployment's id.")
_JOB_VARIABLE = typer.Option("--job-variable", help="KEY=VALUE job variable override, VALUE as JSON when it parses.")


def describe_schedule(schedule: Any) -> str:
    """``cron 0 3 * * * (UTC)``, ``every 1:00:00``, ``rrule ...``; ``[off]`` when inactive."""
    if schedule.cron is not None:
        text = f"cron {schedule.cron}"
    elif schedule.interval is not None:
        text = f"every {schedule.interval}"
    else:
        text = f"rrule {schedule.rrule}"
    text += f" ({schedule.timezone})"
    return text if schedule.active else f"{text} [off]"


def fmt_limit(limit: int) -> str:
    return str(limit) if limit else "unlimited"


@app.command("ls")
def list_deployments(
    flow: Annotated[str | None, typer.Option("--flow", help="Only this flow's deployments.")] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="Only deployments of this work pool.")] = None,
    name: Annotated[str | None, typer.Option(help="Part of the deployment name.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Required tag (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many deployments.")] = 100,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """List deployments."""
    deployments = run(
        lambda c: take(
            c.iter_deployments(
                name_like=name,
                flow_name=flow,
                work_pool_name=pool,
                tags_all=tuple(tag or ()),
                page_size=min(limit, 200),
            ),
            limit,
        )
    )
    if output is OutputFormat.json:
        print_json(deployments)
        return
    rows = table("NAME", "ID", "POOL", "SCHEDULES", "PAUSED")
    rows.columns[0].no_wrap = True  # the full name is what commands take: keep it copyable
    for d in deployments:
        rows.add_row(
            d.full_name,
            d.id,
            d.work_pool_name or "-",
            "\n".join(describe_schedule(s) for s in d.schedules) or "-",
            "yes" if d.paused else "no",
        )
    console.print(rows)


@app.command("inspect")
def inspect_deployment(
    name: Annotated[str, _NAME],
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Show a deployment."""
    from weir.deployments import read_deployment

    d = run(lambda c: read_deployment(c, name))
    if output is OutputFormat.json:
        print_json(d)
        return
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    for label, value in (
        ("name", d.full_name),
        ("id", d.id),
        ("entrypoint", d.entrypoint or "-"),
        ("working directory", d.working_directory or "-"),
        ("work pool", d.work_pool_name or "-"),
        ("work queue", d.work_queue_name or "(pool default)"),
        ("schedules", "\n".join(describe_schedule(s) for s in d.schedules) or "-"),
        ("paused", "yes" if d.paused else "no"),
        ("concurrency", f"{fmt_limit(d.concurrency_limit)} ({d.collision_strategy.value})"),
        ("retries", f"{d.retries} (delays {list(d.retry_delay_seconds)})" if d.retries else "0"),
        ("parameters", json.dumps(d.parameters)),
        ("job variables", json.dumps(d.job_variables)),
        ("tags", ", ".join(d.tags) or "-"),
        ("version", d.version or "-"),
        ("description", d.description or "-"),
        ("updated", fmt_time(d.updated)),
    ):
        info.add_row(label, escape(str(value)))
    console.print(info)


def _scheduled_time(at: str | None, in_seconds: float | None) -> datetime | None:
    if at is not None and in_seconds is not None:
        raise typer.BadParameter("give --at or --in, not both", param_hint="--at")
    if in_seconds is not None:
        return datetime.now(UTC) + timedelta(seconds=in_seconds)
    if at is None:
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {at!r}", param_hint="--at") from None
    if when.tzinfo is None:
        # A naive time is ambiguous on a scheduler: ask for the offset rather than guess.
        raise typer.BadParameter(f"{at!r} has no time zone (add Z or an offset like +02:00)", param_hint="--at")
    return when


def _assignments(values: list[str] | None, option: str, as_json: str | None = None) -> dict[str, Any] | None:
    result: dict[str, Any] = {}
    if as_json is not None:
        try:
            loaded = json.loads(as_json)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint=f"{option}s-json") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter("expected a JSON object", param_hint=f"{option}s-json")
        result.update(loaded)
    result.update(parse_assignment(v, option) for v in values or ())
    return result or None


@app.command("run")
def run_deployment(
    name: Annotated[str, _NAME],
    param: Annotated[list[str] | None, typer.Option("--param", help="KEY=VALUE, VALUE as JSON when it parses.")] = None,
    params_json: Annotated[str | None, typer.Option("--params-json", help="All parameters as one JSON object.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag of the run (repeatable).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Start at this ISO 8601 time (with offset).")] = None,
    in_seconds: Annotated[float | None, typer.Option("--in", min=0, help="Start in this many seconds.")] = None,
    job_variable: Annotated[list[str] | None, _JOB_VARIABLE] = None,
    run_name: Annotated[str | None, typer.Option("--run-name", help="Name of the run (generated if omitted).")] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Work queue instead of the deployment's.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="A resend with this key returns the first run.")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Wait for the end; exit 1 unless it completed.")] = False,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Create a flow run of a deployment and print its id (with --watch, follow it to the end)."""
    from weir.deployments import read_deployment, wait_for_flow_run

    parameters = _assignments(param, "--param", params_json)
    job_variables = _assignments(job_variable, "--job-variable")
    scheduled_time = _scheduled_time(at, in_seconds)
    quiet = output is OutputFormat.json

    def show(flow_run: Any) -> None:
        if not quiet and flow_run.state is not None:
            console.print(f"{fmt_time(flow_run.state.timestamp)}  {fmt_state(flow_run.state)}")

    async def work(client: Any) -> Any:
        deployment = await read_deployment(client, name)
        flow_run_id = await client.create_flow_run_from_deployment(
            deployment.id,
            parameters=parameters,
            tags=tag or (),
            scheduled_time=scheduled_time,
            idempotency_key=idempotency_key,
            job_variables=job_variables,
            name=run_name,
            work_queue_name=queue,
        )
        if not watch:
            return await client.read_flow_run(flow_run_id)
        if not quiet:
            console.print(f"Flow run {flow_run_id} of {deployment.full_name}; waiting for it to finish", markup=False)
        return await wait_for_flow_run(client, flow_run_id, on_state=show)

    try:
        flow_run = run(work)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if output is OutputFormat.json:
        print_json(flow_run)
    elif not watch:
        typer.echo(flow_run.id)
    if watch and not (flow_run.state and flow_run.state.is_completed()):
        raise typer.Exit(1)


def _set_paused(name: str, paused: bool) -> Any:
    from weir.deployments import read_deployment

    async def work(client: Any) -> Any:
        deployment = await read_deployment(client, name)
        if paused:
            return await client.pause_deployment(deployment.id)
        return await client.resume_deployment(deployment.id)

    return run(work)


@app.command("pause")
def pause_deployment(
    name: Annotated[str, _NAME], output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table
) -> None:
    """Stop scheduling runs of a deployment (manual runs are refused too)."""
    d = _set_paused(name, True)
    if output is OutputFormat.json:
        print_json(d)
        return
    console.print(f"Paused deployment {d.full_name}", markup=False)


@app.command("resume")
def resume_deployment(
    name: Annotated[str, _NAME], output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table
) -> None:
    """Schedule runs of a paused deployment again."""
    d = _set_paused(name, False)
    if output is OutputFormat.json:
        print_json(d)
        return
    console.print(f"Resumed deployment {d.full_name}", markup=False)


@app.command("delete")
def delete_deployment(name: Annotated[str, _NAME]) -> None:
    """Delete a deployment (its flow runs stay)."""
    from weir.deployments import read_deployment

    async def work(client: Any) -> Any:
        deployment = await read_deployment(client, name)
        await client.delete_deployment(deployment.id)
        return deployment

    d = run(work)
    console.print(f"Deleted deployment {d.full_name}", markup=False)


@app.command("validate")
def validate_job_variables(
    name: Annotated[str, _NAME],
    job_variable: Annotated[list[str] | None, _JOB_VARIABLE] = None,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Check the deployment's job variables (and these run overrides) against its pool's schema."""
    from weir.deployments import read_deployment

    job_variables = _assignments(job_variable, "--job-variable")

    async def work(client: Any) -> Any:
        deployment = await read_deployment(client, name)
        return await client.validate_job_variables(deployment_id=deployment.id, job_variables=job_variables)

    check = run(work)
    if output is OutputFormat.json:
        print_json(check)
    elif check.valid:
        console.print("Job variables are valid", style="green", markup=False)
    else:
        where = ", ".join(x for x in (f"layer {check.layer}" if check.layer else "", check.field or "") if x)
        console.print(f"Invalid ({where}): {check.message or '-'}", style="red", markup=False, soft_wrap=True)
    if not check.valid:
        raise typer.Exit(1)
