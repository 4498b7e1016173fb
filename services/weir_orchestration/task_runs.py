"""Task runs: create (idempotent by client id or by (flow run, task key,
dynamic key)), read, list, delete. The same insert serves CreateTaskRun
and SyncRuns batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from weir._ids import new_id
from weir.errors import InvalidArgument, NotFound
from weir.v1 import orchestration_pb2 as pb
from weir_kit import paging
from weir_kit.prepared import InsertNew, driver
from weir_kit.runtime import ServiceContext
from weir_kit.values import short_text
from weir_orchestration import events, run_rows
from weir_orchestration.filters import after_key, next_token, task_run_filter
from weir_orchestration.models import flow_runs, flows, task_runs
from weir_orchestration.policy import COMPLETED, PENDING, RunKind, RunPolicy, RunTimes, State, account, default_name
from weir_orchestration.proto import (
    history_values,
    parse_id,
    plain,
    policy_from_pb,
    run_state_values,
    state_from_pb,
    task_run_to_pb,
)
from weir_orchestration.sql import purge_task_run


def task_run_values(req: pb.CreateTaskRunRequest, now: datetime, field: str = "") -> tuple[dict[str, Any], State]:
    """The row and the first state of a task run to create (validated)."""
    task_key = short_text(req.task_key, f"{field}task_key") or short_text(req.name, f"{field}name")
    if not task_key:
        raise InvalidArgument(f"{field}task_key is required", field=f"{field}task_key")
    policy = policy_from_pb(req.policy, f"{field}policy")
    if req.HasField("state"):
        initial = state_from_pb(req.state, now, f"{field}state")
    else:
        initial = State(PENDING, default_name(PENDING), now)
    row = {
        "id": parse_id(req.id, f"{field}id", required=False) or new_id(),
        "flow_run_id": parse_id(req.flow_run_id, f"{field}flow_run_id"),
        "name": short_text(req.name, f"{field}name") or task_key,
        "task_key": task_key,
        "dynamic_key": short_text(req.dynamic_key, f"{field}dynamic_key"),
        "cache_key": short_text(req.cache_key, f"{field}cache_key") or None,
        "cache_expiration": None,
        "tags": list(req.tags),
        "task_inputs": plain(req.task_inputs),
        "retries": policy.retries,
        "retry_delay_seconds": list(policy.retry_delay_seconds),
        "run_count": 0,
        "expected_start_time": None,
        "start_time": None,
        "end_time": None,
        "total_run_time": 0.0,
        "created": now,
        "updated": now,
    }
    return row, initial


@dataclass
class Inserted:
    """Task runs just inserted, each with its first state already written."""

    runs: dict[str, run_rows.Run] = field(default_factory=dict)


def _with_first_state(row: dict[str, Any], state: State) -> tuple[dict[str, Any], RunTimes]:
    """The row to insert, carrying its first state (a forced proposal on a new run) and counters."""
    times = account(RunTimes(), None, state)
    row = {
        **row,
        **run_state_values(state),
        "run_count": times.run_count,
        "expected_start_time": times.expected_start_time,
        "start_time": times.start_time,
        "end_time": times.end_time,
        "total_run_time": times.total_run_time,
        "cache_key": state.details.cache_key or row["cache_key"],
        "cache_expiration": state.details.cache_expiration if state.type == COMPLETED else None,
    }
    return row, times


_NO_STATE = {name: None for name in run_state_values(State(PENDING, "", datetime.min.replace(tzinfo=UTC)))}
_INSERT_NEW = InsertNew(task_runs, [c.name for c in task_runs.c], key="id")


async def insert_task_runs(
    session: AsyncSession, svc: ServiceContext, rows: Sequence[dict[str, Any]], initial: Sequence[State], now: datetime
) -> Inserted:
    """Insert the rows that are new (others are skipped) with their first states and events.

    Rows of unknown flow runs are skipped too. The first state of each new
    run goes into the run row itself, so a batch costs one INSERT of runs,
    one of history and one of events, and no UPDATE. (A first state whose
    client-chosen id is already taken by another run is not written, as a
    forced proposal with that id would be rejected.)
    """
    if not rows:
        return Inserted()
    parents = {r["flow_run_id"] for r in rows}
    query = (
        select(flow_runs.c.id, flow_runs.c.flow_id, flow_runs.c.state_type, flows.c.name)
        .join(flows, flows.c.id == flow_runs.c.flow_id, isouter=True)
        .where(flow_runs.c.id.in_(parents))
    )
    known = {r.id: r for r in (await session.execute(query)).all()}
    wanted = [(r, s) for r, s in zip(rows, initial, strict=True) if r["flow_run_id"] in known]
    if not wanted:
        return Inserted()
    taken = await run_rows.existing_state_ids(session, [s.id for _, s in wanted])
    values: list[dict[str, Any]] = []
    firsts: list[tuple[State, RunTimes] | None] = []
    for r, s in wanted:
        if s.id in taken:
            values.append({**r, **_NO_STATE})
            firsts.append(None)
        else:
            row, times = _with_first_state(r, s)
            values.append(row)
            firsts.append((s, times))
    drv = await driver(session)
    inserted = await _INSERT_NEW.run(drv, values)
    out = Inserted()
    created, changed, history = [], [], []
    for row, first in zip(values, firsts, strict=True):
        if row["id"] not in inserted:
            continue
        parent = known[row["flow_run_id"]]
        ref = events.RunRef(
            RunKind.TASK,
            row["id"],
            row["name"],
            parent.flow_id,
            parent.name or "",
            row["flow_run_id"],
            tags=row["tags"],
        )
        created.append(events.run_changed(ref, "created", now))
        state, times = first if first is not None else (None, RunTimes())
        if state is not None:
            history.append(history_values(row["id"], RunKind.TASK.value, state))
            changed.append(events.state_changed(ref, None, state, state))
        out.runs[row["id"]] = run_rows.Run(
            ref=ref,
            state=state,
            policy=RunPolicy(row["retries"], tuple(row["retry_delay_seconds"])),
            times=times,
            cache_key=row["cache_key"] or "",
            cache_expiration=row["cache_expiration"],
            cancel_requested=parent.state_type in ("CANCELLING", "CANCELLED"),
            read_state_id=state.id if state is not None else None,
        )
    await run_rows.INSERT_STATES.run(drv, history)
    await svc.outbox.add_bundle(session, created + changed)
    return out


async def _find_existing(session: AsyncSession, row: dict[str, Any]) -> Any:
    c = task_runs.c
    same_call = and_(
        c.flow_run_id == row["flow_run_id"], c.task_key == row["task_key"], c.dynamic_key == row["dynamic_key"]
    )
    return (await session.execute(select(task_runs).where(or_(c.id == row["id"], same_call)))).first()


async def create_task_run(svc: ServiceContext, req: pb.CreateTaskRunRequest) -> pb.CreateTaskRunResponse:
    now = svc.clock()
    row, initial = task_run_values(req, now)
    async with svc.db.transaction() as session:
        existing = await _find_existing(session, row)
        if existing is not None:
            return pb.CreateTaskRunResponse(task_run=task_run_to_pb(existing), created=False)
        inserted = await insert_task_runs(session, svc, [row], [initial], now)
        if not inserted.runs:
            existing = await _find_existing(session, row)
            if existing is None:
                raise NotFound(f"flow run {row['flow_run_id']} not found", field="flow_run_id")
            return pb.CreateTaskRunResponse(task_run=task_run_to_pb(existing), created=False)
        created = (await session.execute(select(task_runs).where(task_runs.c.id == row["id"]))).one()
    return pb.CreateTaskRunResponse(task_run=task_run_to_pb(created), created=True)


async def get_task_run(svc: ServiceContext, req: pb.GetTaskRunRequest) -> pb.GetTaskRunResponse:
    run_id = parse_id(req.id, "id")
    async with svc.db.read() as session:
        row = (await session.execute(select(task_runs).where(task_runs.c.id == run_id))).first()
    if row is None:
        raise NotFound(f"task run {run_id} not found", field="id")
    return pb.GetTaskRunResponse(task_run=task_run_to_pb(row))


async def list_task_runs(svc: ServiceContext, req: pb.ListTaskRunsRequest) -> pb.ListTaskRunsResponse:
    size = paging.page_size(req.page.page_size)
    c = task_runs.c
    conditions = [*task_run_filter(req.filter), *after_key(c.created, c.id, req.page.page_token, descending=True)]
    query = select(task_runs).where(*conditions).order_by(c.created.desc(), c.id.desc()).limit(size)
    async with svc.db.read() as session:
        rows = (await session.execute(query)).all()
    return pb.ListTaskRunsResponse(
        task_runs=[task_run_to_pb(r) for r in rows], next_page_token=next_token(rows, size, lambda r: r.created)
    )


async def delete_task_run(svc: ServiceContext, req: pb.DeleteTaskRunRequest) -> pb.DeleteTaskRunResponse:
    run_id = parse_id(req.id, "id")
    now = svc.clock()
    async with svc.db.transaction() as session:
        row = (await session.execute(select(task_runs).where(task_runs.c.id == run_id))).first()
        if row is None:
            raise NotFound(f"task run {run_id} not found", field="id")
        await purge_task_run(session, run_id)
        ref = events.RunRef(RunKind.TASK, run_id, row.name, flow_run_id=row.flow_run_id, tags=row.tags)
        await svc.outbox.add(session, [events.run_changed(ref, "deleted", now)])
    return pb.DeleteTaskRunResponse()
