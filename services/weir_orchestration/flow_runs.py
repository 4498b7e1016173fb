"""Flow runs: create (idempotent by client id or by (flow, idempotency
key)), read, list, delete, heartbeat. State changes go through ``states``."""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from weir.errors import Conflict, InvalidArgument, NotFound
from weir.v1 import orchestration_pb2 as pb
from weir_kit import paging
from weir_kit.db import UtcDateTime
from weir_kit.prepared import InsertNew, Prepared, driver
from weir_kit.runtime import ServiceContext
from weir_kit.values import short_text
from weir_orchestration import events, run_rows, states
from weir_orchestration.filters import after_key, flow_run_filter, next_token
from weir_orchestration.flows import check_name, ensure_flow
from weir_orchestration.models import flow_runs, flows
from weir_orchestration.policy import PENDING, RunKind, RunTimes, State, default_name
from weir_orchestration.proto import flow_run_to_pb, parse_id, plain, policy_from_pb, state_from_pb
from weir_orchestration.sql import purge_flow_runs

_ADJECTIVES = (
    "amber",
    "brisk",
    "calm",
    "deft",
    "eager",
    "fleet",
    "gentle",
    "hardy",
    "keen",
    "lucid",
    "mellow",
    "nimble",
)
_NOUNS = ("otter", "heron", "lynx", "salmon", "beaver", "wren", "marten", "ibis", "newt", "plover", "stoat", "tern")
_CANCEL_TYPES = ("CANCELLING", "CANCELLED")


def generate_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}"


#: The keys of ``values`` in :func:`create_flow_run`: what it sets besides ``id``, ``flow_id`` and the
#: state columns (those come with the first state).
_RUN_VALUE_KEYS = (
    "name",
    "parameters",
    "context",
    "tags",
    "parent_task_run_id",
    "deployment_id",
    "idempotency_key",
    "retries",
    "retry_delay_seconds",
    "run_count",
    "total_run_time",
    "created",
    "updated",
)


def _select() -> Any:
    return select(flow_runs, flows.c.name.label("flow_name")).join(
        flows, flows.c.id == flow_runs.c.flow_id, isouter=True
    )


async def fetch(session: AsyncSession, flow_run_id: str) -> Any:
    return (await session.execute(_select().where(flow_runs.c.id == flow_run_id))).first()


#: A flow run by id, in a write transaction (straight on the driver: no statement built per call).
_FETCH = Prepared(_select().where(flow_runs.c.id == bindparam("id")))
_NEW_RUN_KEYS = ("id", "flow_id", *_RUN_VALUE_KEYS)
_INSERT_NEW_RUN = InsertNew(flow_runs, _NEW_RUN_KEYS, key="id")


async def _find_existing(session: AsyncSession, run_id: str, flow_id: str, key: str) -> Any:
    if run_id:
        row = await fetch(session, run_id)
        if row is not None:
            return row
    if key:
        query = _select().where(flow_runs.c.flow_id == flow_id, flow_runs.c.idempotency_key == key)
        return (await session.execute(query)).first()
    return None


async def create_flow_run(
    svc: ServiceContext, req: pb.CreateFlowRunRequest, cache: run_rows.RunCache | None = None
) -> pb.CreateFlowRunResponse:
    """Create a flow run with its first state; a resend (same id, or same flow and idempotency
    key) gets the existing run back. ``cache``: where the new run goes for its first proposals."""
    now = svc.clock()
    run_id = parse_id(req.id, "id", required=False)
    flow_id = parse_id(req.flow_id, "flow_id", required=False)
    if not flow_id and not req.flow_name:
        raise InvalidArgument("give flow_id or flow_name", field="flow_id")
    initial = (
        state_from_pb(req.state, now, "state") if req.HasField("state") else State(PENDING, default_name(PENDING), now)
    )
    policy = policy_from_pb(req.policy, "policy")
    values = {
        "name": short_text(req.name, "name") or generate_name(),
        "parameters": plain(req.parameters),
        "context": plain(req.context),
        "tags": list(req.tags),
        "parent_task_run_id": parse_id(req.parent_task_run_id, "parent_task_run_id", required=False) or None,
        "deployment_id": parse_id(req.deployment_id, "deployment_id", required=False) or None,
        "idempotency_key": short_text(req.idempotency_key, "idempotency_key") or None,
        "retries": policy.retries,
        "retry_delay_seconds": list(req.policy.retry_delay_seconds),
        "run_count": 0,
        "total_run_time": 0.0,
        "created": now,
        "updated": now,
    }
    decided: dict[str, run_rows.Run] = {}
    async with svc.db.transaction() as session:
        if flow_id:
            found = (await session.execute(select(flows.c.name).where(flows.c.id == flow_id))).first()
            if found is None:
                raise NotFound(f"flow {flow_id} not found", field="flow_id")
            flow_name = found.name
        else:
            flow, _ = await ensure_flow(session, svc, check_name(req.flow_name, "flow_name"), [], now)
            flow_id, flow_name = flow.id, flow.name
        # Inserted first, looked up only when a unique key (the id, or the flow and idempotency
        # key) is already taken: a resend, or a concurrent create that won.
        run_id = run_id or str(uuid.uuid4())
        drv = await driver(session)
        if not await _INSERT_NEW_RUN.run(drv, [{"id": run_id, "flow_id": flow_id, **values}]):
            existing = await _find_existing(session, run_id, flow_id, req.idempotency_key)
            if existing is None:  # the run that held the key was deleted between the two statements
                raise Conflict(f"flow run {run_id} could not be created: its id was taken", field="id")
            return pb.CreateFlowRunResponse(flow_run=flow_run_to_pb(existing), created=False)
        ref = events.RunRef(
            RunKind.FLOW, run_id, values["name"], flow_id, flow_name, "", values["deployment_id"] or "", values["tags"]
        )
        # As the row was inserted: no need to read it back before its first state.
        run = run_rows.Run(ref, None, policy, RunTimes(), keyed={})
        await svc.outbox.add(session, [events.run_changed(ref, "created", now)])
        first = states.Proposal(run_id, initial, force=True)
        await states.apply(session, svc, RunKind.FLOW, [first], now, {run_id: run}, decided=decided)
        (row,) = await drv.fetch(_FETCH, {"id": run_id})
    if cache is not None and svc.db.is_postgres:
        cache.put(decided.values())
    return pb.CreateFlowRunResponse(flow_run=flow_run_to_pb(row), created=True)


async def get_flow_run(svc: ServiceContext, req: pb.GetFlowRunRequest) -> pb.GetFlowRunResponse:
    run_id = parse_id(req.id, "id")
    async with svc.db.read() as session:
        row = await fetch(session, run_id)
    if row is None:
        raise NotFound(f"flow run {run_id} not found", field="id")
    return pb.GetFlowRunResponse(flow_run=flow_run_to_pb(row))


def _sort(sort: int) -> tuple[Any, bool]:
    c = flow_runs.c
    expected = type_coerce(func.coalesce(c.expected_start_time, c.created), UtcDateTime)
    table = {
        pb.FLOW_RUN_SORT_UNSPECIFIED: (c.created, True),
        pb.CREATED_DESC: (c.created, True),
        pb.CREATED_ASC: (c.created, False),
        pb.EXPECTED_START_TIME_DESC: (expected, True),
        pb.EXPECTED_START_TIME_ASC: (expected, False),
    }
    if sort not in table:
        raise InvalidArgument(f"sort has no value {sort}", field="sort")
    return table[sort]


async def list_flow_runs(svc: ServiceContext, req: pb.ListFlowRunsRequest) -> pb.ListFlowRunsResponse:
    size = paging.page_size(req.page.page_size)
    key, descending = _sort(req.sort)
    c = flow_runs.c
    conditions = [*flow_run_filter(req.filter), *after_key(key, c.id, req.page.page_token, descending=descending)]
    order = (key.desc(), c.id.desc()) if descending else (key.asc(), c.id.asc())
    query = _select().add_columns(key.label("sort_key")).where(*conditions).order_by(*order).limit(size)
    async with svc.db.read() as session:
        rows = (await session.execute(query)).all()
    return pb.ListFlowRunsResponse(
        flow_runs=[flow_run_to_pb(r) for r in rows], next_page_token=next_token(rows, size, _sort_value)
    )


def _sort_value(row: Any) -> datetime:
    return row.sort_key


async def delete_flow_run(svc: ServiceContext, req: pb.DeleteFlowRunRequest) -> pb.DeleteFlowRunResponse:
    run_id = parse_id(req.id, "id")
    now = svc.clock()
    async with svc.db.transaction() as session:
        row = await fetch(session, run_id)
        if row is None:
            raise NotFound(f"flow run {run_id} not found", field="id")
        await purge_flow_runs(session, [run_id])
        ref = events.RunRef(RunKind.FLOW, run_id, row.name, row.flow_id, row.flow_name or "", tags=row.tags)
        await svc.outbox.add(session, [events.run_changed(ref, "deleted", now)])
    return pb.DeleteFlowRunResponse()


async def heartbeat(svc: ServiceContext, req: pb.HeartbeatFlowRunRequest) -> pb.HeartbeatFlowRunResponse:
    run_id = parse_id(req.flow_run_id, "flow_run_id")
    async with svc.db.transaction() as session:
        stmt = (
            update(flow_runs)
            .where(flow_runs.c.id == run_id)
            .values(heartbeat=svc.clock())
            .returning(flow_runs.c.state_type)
        )
        row = (await session.execute(stmt)).first()
    if row is None:
        raise NotFound(f"flow run {run_id} not found", field="flow_run_id")
    return pb.HeartbeatFlowRunResponse(cancel_requested=row.state_type in _CANCEL_TYPES)
