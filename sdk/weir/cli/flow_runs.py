"""`weir flow-run ...`: list, inspect, create, cancel, delete and steer flow runs."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import typer
from rich.table import Table

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

app = typer.Typer(help="List, inspect, create, delete and steer flow runs.", no_args_is_help=True)


@app.command("ls")
def list_flow_runs(
    state: Annotated[list[str] | None, typer.Option("--state", help="State type (repeatable).")] = None,
    name: Annotated[str | None, typer.Option(help="Part of the run name.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Required tag (repeatable).")] = None,
    flow: Annotated[list[str] | None, typer.Option("--flow", help="Flow name (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 20,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """List flow runs, newest first."""
    from weir.client.types import FlowRunFilter

    flt = FlowRunFilter(
        state_types=parse_state_types(state),
        name_like=name,
        tags_all=tuple(tag or ()),
        flow_names=tuple(flow or ()),
    )
    runs = run(lambda c: take(c.iter_flow_runs(flt, page_size=min(limit, 200)), limit))
    if output is OutputFormat.json:
        print_json(runs)
        return
    rows = table("ID", "NAME", "FLOW", "STATE", "START", "DURATION")
    for r in runs:
        start = r.start_time or r.expected_start_time
        rows.add_row(
            r.id,
            r.name,
            r.flow_name or r.flow_id,
            fmt_state(r.state),
            fmt_time(start),
            fmt_duration(r.total_run_time_seconds),
        )
    console.print(rows)


@app.command("inspect")
def inspect_flow_run(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID")],
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Show a flow run, its current state and its state history."""

    async def work(client: Any) -> tuple[Any, list[Any]]:
        flow_run = await client.read_flow_run(flow_run_id)
        states = [s async for s in client.iter_states(flow_run_id=flow_run_id)]
        return flow_run, states

    flow_run, states = run(work)
    if output is OutputFormat.json:
        print_json({"flow_run": flow_run, "states": states})
        return
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    info.add_row("id", flow_run.id)
    info.add_row("name", flow_run.name)
    info.add_row("flow", f"{flow_run.flow_name or '-'} ({flow_run.flow_id})")
    info.add_row("state", fmt_state(flow_run.state))
    if flow_run.state and flow_run.state.message:
        info.add_row("message", flow_run.state.message)
    info.add_row("tags", ", ".join(flow_run.tags) or "-")
    info.add_row("parameters", json.dumps(flow_run.parameters, default=str))
    info.add_row("run count", str(flow_run.run_count))
    info.add_row("expected start", fmt_time(flow_run.expected_start_time))
    info.add_row("start", fmt_time(flow_run.start_time))
    info.add_row("end", fmt_time(flow_run.end_time))
    info.add_row("run time", fmt_duration(flow_run.total_run_time_seconds))
    if flow_run.deployment_id:
        info.add_row("deployment", flow_run.deployment_id)
    if flow_run.parent_task_run_id:
        info.add_row("parent task run", flow_run.parent_task_run_id)
    console.print(info)
    history = table("TIME", "STATE", "MESSAGE", title="State history")
    for s in states:
        history.add_row(fmt_time(s.timestamp), fmt_state(s), s.message or "")
    console.print(history)


@app.command("delete")
def delete_flow_run(flow_run_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Delete a flow run and its task runs, states and logs."""
    run(lambda c: c.delete_flow_run(flow_run_id))
    console.print(f"Deleted flow run {flow_run_id}", markup=False)


def _parse_level(text: str | None) -> int:
    if text is None:
        return 0
    if text.isdigit():
        return int(text)
    level = logging.getLevelNamesMapping().get(text.upper())
    if level is None:
        raise typer.BadParameter(f"unknown level {text!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)")
    return level


@app.command("logs")
def flow_run_logs(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID")],
    level: Annotated[str | None, typer.Option(help="Lowest level shown: INFO, WARNING, 30 ...")] = None,
    output: Annotated[OutputFormat, OUTPUT_OPTION] = OutputFormat.table,
) -> None:
    """Show the logs of a flow run (and of its task runs), oldest first."""
    from weir.client.types import LogFilter

    flt = LogFilter(flow_run_id=flow_run_id, level_ge=_parse_level(level))

    async def work(client: Any) -> list[Any]:
        # Reading the run first turns a wrong id into "not found", not an empty list.
        await client.read_flow_run(flow_run_id)
        return [record async for record in client.iter_logs(flt, page_size=500)]

    records = run(work)
    if output is OutputFormat.json:
        print_json(records)
        return
    rows = table("TIME", "LEVEL", "LOGGER", "MESSAGE")
    for record in records:
        rows.add_row(
            fmt_time(record.timestamp),
            logging.getLevelName(record.level),
            record.name,
            record.message,
        )
    console.print(rows)


@app.command("set-state")
def set_flow_run_state(
    flow_run_id: Annotated[str, typer.Argument(metavar="ID")],
    state_type: Annotated[str, typer.Argument(metavar="TYPE", help="SCHEDULED, RUNNING, CANCELLED ...")],
    name: Annotated[str | None, typer.Option(help="State name, e.g. Late.")] = None,
    message: Annotated[str | None, typer.Option(help="Why (kept with the state).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Bypass the orchestration policy.")] = False,
) -> None:
    """Propose a state for a flow run; exit 0 when ACCEPTed, 1 otherwise."""
    from weir.client.types import Decision, State

    (kind,) = parse_state_types([state_type])
    proposed = State(type=kind, name=name, message=message)
    result = run(lambda c: c.set_flow_run_state(flow_run_id, proposed, force=force))
    now = result.state.display_name if result.state else "-"
    reason = f": {result.reason}" if result.reason else ""
    rule = f" [{result.rule}]" if result.rule else ""
    if result.decision is Decision.ACCEPT:
        console.print(f"ACCEPT: flow run is now {now}", style="green", markup=False)
        return
    if result.decision is Decision.WAIT:
        text = f"WAIT{reason}{rule} (propose again in {result.delay_seconds:g}s)"
    else:
        text = f"{result.decision.value}{reason}{rule} (flow run is {now})"
    console.print(text, style="yellow", markup=False, soft_wrap=True)
    raise typer.Exit(1)


def parse_assignment(text: str, option: str = "--param") -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line, VALUE read as JSON when it parses."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint=option)
    try:
        # `--param n=3` is the number 3, `--param xs=[1,2]` a list; anything
        # that is not JSON is taken as a string.
        return key, json.loads(raw)
    except ValueError:
        return key, raw


@app.command("create")
def create_flow_run(
    flow: Annotated[str, typer.Option("--flow", help="Flow name (created if missing).")],
    name: Annotated[str | None, typer.Option(help="Run name (generated when omitted).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="KEY=VALUE, VALUE as JSON when it parses.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
) -> None:
    """Create a flow run of a flow and print its id."""
    parameters = dict(parse_assignment(p) for p in param or ())
    flow_run = run(lambda c: c.create_flow_run(flow_name=flow, name=name, parameters=parameters, tags=tag or ()))
    typer.echo(flow_run.id)


@app.command("cancel")
def cancel_flow_run(flow_run_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a flow run: a pending or running one is asked to stop (Cancelling),
    a scheduled or paused one is cancelled at once."""
    from weir.client.types import Decision, State, StateType
    from weir.errors import FailedPrecondition

    async def work(client: Any) -> Any:
        flow_run = await client.read_flow_run(flow_run_id)
        current = flow_run.state
        if current is None or current.type in (StateType.SCHEDULED, StateType.PAUSED):
            proposed = StateType.CANCELLED
        elif current.type in (StateType.PENDING, StateType.RUNNING):
            proposed = StateType.CANCELLING
        elif current.type is StateType.CANCELLING:
            raise FailedPrecondition(f"flow run {flow_run_id} is already cancelling")
        else:
            raise FailedPrecondition(
                f"flow run {flow_run_id} already ended {current.display_name}; there is nothing to cancel"
            )
        state = State(type=proposed, message="Cancelled from the CLI")
        return await client.set_flow_run_state(flow_run_id, state)

    result = run(work)
    now = result.state.display_name if result.state else "-"
    if result.decision is Decision.ACCEPT:
        console.print(f"Flow run {flow_run_id} is now {now}", style="green", markup=False)
        return
    reason = f": {result.reason}" if result.reason else ""
    console.print(f"{result.decision.value}{reason} (flow run is {now})", style="yellow", markup=False, soft_wrap=True)
    raise typer.Exit(1)
