"""Flows: a named function users decorate with ``@flow``. Create is
idempotent by name (a retried create returns the existing flow)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from weir.errors import InvalidArgument, NotFound
from weir.v1 import orchestration_pb2 as pb
from weir_kit import paging
from weir_kit.prepared import Prepared, driver
from weir_kit.runtime import ServiceContext
from weir_kit.values import short_text
from weir_orchestration import events
from weir_orchestration.filters import after_key, flow_filter, next_token
from weir_orchestration.models import flow_runs, flows
from weir_orchestration.policy import RunKind
from weir_orchestration.proto import flow_to_pb, parse_id
from weir_orchestration.sql import insert_ignore, purge_flow_runs


def check_name(name: str, field: str = "name") -> str:
    name = short_text(name.strip(), field)
    if not name:
        raise InvalidArgument(f"{field} is required", field=field)
    return name


#: A flow by name, in a write transaction (every CreateFlowRun by flow name asks it).
_BY_NAME = Prepared(select(flows).where(flows.c.name == bindparam("name")))


async def ensure_flow(
    session: AsyncSession, svc: ServiceContext, name: str, tags: list[str], now: datetime
) -> tuple[Any, bool]:
    """The flow named ``name``, created if missing; and whether it was created."""
    found = await (await driver(session)).fetch(_BY_NAME, {"name": name})
    if found:
        return found[0], False
    flow_id = str(uuid.uuid4())
    values = {"id": flow_id, "name": name, "tags": tags, "created": now, "updated": now}
    stmt = insert_ignore(svc.db, flows).values(values)
    result = await session.execute(stmt)
    if result.rowcount == 0:  # a concurrent create won
        return (await session.execute(select(flows).where(flows.c.name == name))).one(), False
    await svc.outbox.add(session, [events.flow_changed(flow_id, name, tags, "created", now)])
    return (await session.execute(select(flows).where(flows.c.id == flow_id))).one(), True


async def create_flow(svc: ServiceContext, req: pb.CreateFlowRequest) -> pb.CreateFlowResponse:
    name = check_name(req.name)
    async with svc.db.transaction() as session:
        row, _ = await ensure_flow(session, svc, name, list(req.tags), svc.clock())
    return pb.CreateFlowResponse(flow=flow_to_pb(row))


async def get_flow(svc: ServiceContext, req: pb.GetFlowRequest) -> pb.GetFlowResponse:
    if bool(req.id) == bool(req.name):
        raise InvalidArgument("give exactly one of id or name", field="id")
    cond = flows.c.id == parse_id(req.id, "id") if req.id else flows.c.name == short_text(req.name, "name", None)
    async with svc.db.read() as session:
        row = (await session.execute(select(flows).where(cond))).first()
    if row is None:
        raise NotFound(f"flow {req.id or req.name!r} not found", field="id" if req.id else "name")
    return pb.GetFlowResponse(flow=flow_to_pb(row))


async def list_flows(svc: ServiceContext, req: pb.ListFlowsRequest) -> pb.ListFlowsResponse:
    size = paging.page_size(req.page.page_size)
    c = flows.c
    conditions = [*flow_filter(req.filter), *after_key(c.created, c.id, req.page.page_token, descending=True)]
    query = select(flows).where(*conditions).order_by(c.created.desc(), c.id.desc()).limit(size)
    async with svc.db.read() as session:
        rows = (await session.execute(query)).all()
    return pb.ListFlowsResponse(
        flows=[flow_to_pb(r) for r in rows], next_page_token=next_token(rows, size, lambda r: r.created)
    )


async def delete_flow(svc: ServiceContext, req: pb.DeleteFlowRequest) -> pb.DeleteFlowResponse:
    """Delete a flow and, with it, its flow runs (and theirs task runs, states, logs)."""
    flow_id = parse_id(req.id, "id")
    now = svc.clock()
    async with svc.db.transaction() as session:
        row = (await session.execute(select(flows).where(flows.c.id == flow_id))).first()
        if row is None:
            raise NotFound(f"flow {flow_id} not found", field="id")
        query = select(flow_runs.c.id, flow_runs.c.name, flow_runs.c.tags).where(flow_runs.c.flow_id == flow_id)
        runs = (await session.execute(query)).all()
        await purge_flow_runs(session, [r.id for r in runs])
        await session.execute(delete(flows).where(flows.c.id == flow_id))
        gone = [
            events.run_changed(
                events.RunRef(RunKind.FLOW, r.id, r.name, flow_id, row.name, tags=r.tags), "deleted", now
            )
            for r in runs
        ]
        await svc.outbox.add(session, [*gone, events.flow_changed(flow_id, row.name, row.tags, "deleted", now)])
    return pb.DeleteFlowResponse()
