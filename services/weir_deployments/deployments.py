"""Deployments: a flow put on a schedule or on demand, with the work pool that runs it.

Keyed by (flow name, deployment name); create and update are one idempotent
upsert. Schedules are stored with a cursor each (the last occurrence that
has a run); a re-deploy that keeps a schedule unchanged keeps its cursor,
so it neither repeats nor skips a run. Pausing a deployment removes its
auto-scheduled runs that have not started; resuming starts the schedules
again from now.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from weir.errors import InvalidArgument, NotFound
from weir.v1 import deployments_pb2 as pb
from weir_deployments import job_variables, schedules
from weir_deployments.models import REFUSED, deployment_runs, deployments
from weir_deployments.models import schedules as schedule_table
from weir_deployments.parameters import check_parameters, check_schema
from weir_deployments.proto import COLLISION_NAMES, check_name, deployment_to_pb, parse_id, struct_to_dict
from weir_deployments.remote import Orchestration
from weir_deployments.sql import insert_ignore
from weir_deployments.work_pools import ensure_queue, fetch_pool
from weir_kit import paging
from weir_kit.events import new_event, resource
from weir_kit.runtime import ServiceContext
from weir_kit.sqlfilters import contains_text, tags_all
from weir_kit.values import short_text

log = logging.getLogger("weir.deployments")

#: Runs that have not started yet and can be withdrawn.
WAITING = ("NEW", "SCHEDULED", REFUSED)


def _event(verb: str, row: Any, now: datetime) -> Any:
    return new_event(
        f"weir.deployment.{verb}",
        resource(f"weir.deployment.{row.id}", name=f"{row.flow_name}/{row.name}"),
        occurred=now,
        related=[resource(f"weir.work-pool.{row.work_pool_name}", name=row.work_pool_name, role="work-pool")]
        if row.work_pool_name
        else [],
    )


async def fetch(session: AsyncSession, deployment_id: str, field: str = "id") -> Any:
    row = (await session.execute(select(deployments).where(deployments.c.id == deployment_id))).first()
    if row is None:
        raise NotFound(f"no deployment with id {deployment_id}", field=field)
    return row


async def fetch_schedules(session: AsyncSession, deployment_ids: Sequence[str]) -> dict[str, list[Any]]:
    query = (
        select(schedule_table)
        .where(schedule_table.c.deployment_id.in_(list(deployment_ids)))
        .order_by(schedule_table.c.position)
    )
    out: dict[str, list[Any]] = {i: [] for i in deployment_ids}
    for row in (await session.execute(query)).all():
        out[row.deployment_id].append(row)
    return out


async def _to_pb(session: AsyncSession, row: Any) -> pb.Deployment:
    return deployment_to_pb(row, (await fetch_schedules(session, [row.id]))[row.id])


def _parse_specs(msg: pb.Deployment) -> list[schedules.ScheduleSpec]:
    return [schedules.parse_schedule(s, field=f"deployment.schedules[{i}]") for i, s in enumerate(msg.schedules)]


async def upsert(
    svc: ServiceContext, orch: Orchestration, req: pb.UpsertDeploymentRequest
) -> pb.UpsertDeploymentResponse:
    msg = req.deployment
    flow_name = check_name(msg.flow_name, "deployment.flow_name")
    name = check_name(msg.name, "deployment.name")
    # In a thread when there is an rrule: proving that a rule such as FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30
    # never produces a time makes dateutil search to year 9999 (seconds), which must not stall the loop.
    specs = await asyncio.to_thread(_parse_specs, msg) if any(s.rrule for s in msg.schedules) else _parse_specs(msg)
    schema = struct_to_dict(msg.parameter_schema)
    check_schema(schema, "deployment.parameter_schema")
    params = struct_to_dict(msg.parameters)
    check_parameters(schema, params, "deployment.parameters", partial=True)
    if msg.concurrency_limit < 0:
        raise InvalidArgument(
            "deployment.concurrency_limit must be >= 0 (0: no limit)", field="deployment.concurrency_limit"
        )
    if msg.retries < 0:
        raise InvalidArgument("deployment.retries must be >= 0", field="deployment.retries")
    if any(d < 0 for d in msg.retry_delay_seconds):
        raise InvalidArgument("deployment.retry_delay_seconds must be >= 0", field="deployment.retry_delay_seconds")
    pool_name = check_name(msg.work_pool_name, "deployment.work_pool_name", required=False)
    queue_name = check_name(msg.work_queue_name, "deployment.work_queue_name", required=False)
    jobvars = struct_to_dict(msg.job_variables)
    now = svc.clock()
    values = {
        "version": short_text(msg.version, "deployment.version"),
        "description": short_text(msg.description, "deployment.description", None),
        "tags": sorted(set(msg.tags)),
        "entrypoint": short_text(msg.entrypoint, "deployment.entrypoint", None),
        "working_directory": short_text(msg.working_directory, "deployment.working_directory", None),
        "parameters": params,
        "parameter_schema": schema,
        "job_variables": jobvars,
        "work_pool_name": pool_name,
        "work_queue_name": queue_name,
        "paused": msg.paused,
        "concurrency_limit": msg.concurrency_limit,
        "collision_strategy": COLLISION_NAMES[msg.collision_strategy],
        "retries": msg.retries,
        "retry_delay_seconds": list(msg.retry_delay_seconds),
        "updated": now,
    }
    withdrawn: list[str] = []
    async with svc.db.transaction() as session:
        if pool_name:
            pool = await fetch_pool(session, pool_name, "deployment.work_pool_name")
            problem = job_variables.validate_layers(
                pool.base_job_template,
                [("work pool defaults", job_variables.defaults(pool.base_job_template)), ("deployment", jobvars)],
            )
            if problem is not None:
                job_variables.raise_problem(problem, "deployment.job_variables")
            if queue_name:
                await ensure_queue(svc, session, pool_name, queue_name, now)
        elif jobvars:
            raise InvalidArgument("job_variables need a work pool", field="deployment.work_pool_name")
        inserted = await session.execute(
            insert_ignore(svc.db, deployments).values(
                id=str(uuid.uuid4()), flow_name=flow_name, name=name, created=now, **values
            )
        )
        where = and_(deployments.c.flow_name == flow_name, deployments.c.name == name)
        if inserted.rowcount == 0:
            await session.execute(update(deployments).where(where).values(**values))
        row = (await session.execute(select(deployments).where(where))).one()
        withdrawn = await _replace_schedules(session, row, specs, now)
        # Runs orchestration refused were made from the deployment as it was: forget them, so that
        # its schedules make new ones from the deployment as it is now.
        withdrawn += await _withdraw(
            session, and_(deployment_runs.c.deployment_id == row.id, deployment_runs.c.status == REFUSED)
        )
        if row.paused:
            withdrawn += await _withdraw_scheduled(session, row.id)
        created = bool(inserted.rowcount)
        await svc.outbox.add(session, [_event("created" if created else "updated", row, now)])
        out = await _to_pb(session, row)
    await _delete_remote(orch, withdrawn)
    return pb.UpsertDeploymentResponse(deployment=out, created=created)


async def _replace_schedules(
    session: AsyncSession, row: Any, specs: list[schedules.ScheduleSpec], now: datetime
) -> list[str]:
    """Store ``specs`` as the deployment's schedules; returns the runs withdrawn from removed ones."""
    old = (await fetch_schedules(session, [row.id]))[row.id]
    by_key = {s.key: s for s in old}
    kept: set[str] = set()
    for position, spec in enumerate(specs):
        previous = by_key.pop(spec.key(), None)
        if previous is not None:
            kept.add(previous.id)
            await session.execute(
                update(schedule_table)
                .where(schedule_table.c.id == previous.id)
                .values(position=position, active=spec.active)
            )
            continue
        await session.execute(
            schedule_table.insert().values(
                id=str(uuid.uuid4()),
                deployment_id=row.id,
                position=position,
                key=spec.key(),
                kind=spec.kind,
                interval_seconds=spec.interval.total_seconds() if spec.interval is not None else None,
                cron=spec.cron,
                rrule=spec.rrule,
                anchor=spec.anchor,
                timezone=spec.timezone,
                active=spec.active,
                cursor=now,
                created=now,
            )
        )
    removed = [s.id for s in old if s.id not in kept]
    withdrawn: list[str] = []
    if removed:
        withdrawn = await _withdraw(session, deployment_runs.c.schedule_id.in_(removed))
        await session.execute(delete(schedule_table).where(schedule_table.c.id.in_(removed)))
    return withdrawn


async def _withdraw(session: AsyncSession, where: Any) -> list[str]:
    """Delete waiting runs matching ``where`` here; returns their ids (to delete in orchestration too)."""
    cond = and_(where, deployment_runs.c.status.in_(WAITING))
    ids = [r.flow_run_id for r in (await session.execute(select(deployment_runs.c.flow_run_id).where(cond))).all()]
    if ids:
        await session.execute(delete(deployment_runs).where(deployment_runs.c.flow_run_id.in_(ids)))
    return ids


async def _withdraw_scheduled(session: AsyncSession, deployment_id: str) -> list[str]:
    c = deployment_runs.c
    return await _withdraw(session, and_(c.deployment_id == deployment_id, c.schedule_id.is_not(None)))


async def _delete_remote(orch: Orchestration, flow_run_ids: list[str]) -> None:
    for flow_run_id in flow_run_ids:
        try:
            await orch.delete(flow_run_id)
        except NotFound:
            pass
        except Exception as exc:  # the run stays in orchestration, SCHEDULED with no queue row
            log.warning("could not delete withdrawn flow run %s: %s", flow_run_id, exc)


async def get(svc: ServiceContext, req: pb.GetDeploymentRequest) -> pb.GetDeploymentResponse:
    async with svc.db.read() as session:
        row = await resolve(session, req.id, req.full_name)
        return pb.GetDeploymentResponse(deployment=await _to_pb(session, row))


async def resolve(session: AsyncSession, deployment_id: str, full_name: str) -> Any:
    if bool(deployment_id) == bool(full_name):
        raise InvalidArgument("give exactly one of id or full_name", field="id")
    if deployment_id:
        return await fetch(session, parse_id(deployment_id, "id"))
    flow_name, sep, name = short_text(full_name, "full_name", None).partition("/")
    if not sep or not flow_name or not name:
        raise InvalidArgument(f"full_name must be 'flow_name/deployment_name', got {full_name!r}", field="full_name")
    query = select(deployments).where(deployments.c.flow_name == flow_name, deployments.c.name == name)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"no deployment named {full_name!r}", field="full_name")
    return row


async def list_deployments(svc: ServiceContext, req: pb.ListDeploymentsRequest) -> pb.ListDeploymentsResponse:
    size = paging.page_size(req.page.page_size)
    after = paging.decode_token(req.page.page_token, 2)
    c = deployments.c
    query = select(deployments).order_by(c.flow_name, c.name).limit(size + 1)
    if req.name_like:
        like = short_text(req.name_like, "name_like", None)
        query = query.where(contains_text(c.flow_name, like) | contains_text(c.name, like))
    if req.flow_name:
        query = query.where(c.flow_name == short_text(req.flow_name, "flow_name", None))
    if req.work_pool_name:
        query = query.where(c.work_pool_name == short_text(req.work_pool_name, "work_pool_name", None))
    for clause in tags_all(c.tags, list(req.tags_all)):
        query = query.where(clause)
    if after is not None:
        query = query.where((c.flow_name > after[0]) | ((c.flow_name == after[0]) & (c.name > after[1])))
    async with svc.db.read() as session:
        rows = (await session.execute(query)).all()[: size + 1]
        token = paging.encode_token(rows[size - 1].flow_name, rows[size - 1].name) if len(rows) > size else ""
        rows = rows[:size]
        by_id = await fetch_schedules(session, [r.id for r in rows])
    return pb.ListDeploymentsResponse(
        deployments=[deployment_to_pb(r, by_id[r.id]) for r in rows], next_page_token=token
    )


async def delete_deployment(
    svc: ServiceContext, orch: Orchestration, req: pb.DeleteDeploymentRequest
) -> pb.DeleteDeploymentResponse:
    deployment_id = parse_id(req.id, "id")
    now = svc.clock()
    async with svc.db.transaction() as session:
        row = await fetch(session, deployment_id)
        withdrawn = await _withdraw(session, deployment_runs.c.deployment_id == deployment_id)
        await session.execute(delete(schedule_table).where(schedule_table.c.deployment_id == deployment_id))
        await session.execute(delete(deployments).where(deployments.c.id == deployment_id))
        await svc.outbox.add(session, [_event("deleted", row, now)])
    await _delete_remote(orch, withdrawn)
    return pb.DeleteDeploymentResponse()


async def set_paused(
    svc: ServiceContext, orch: Orchestration, req: pb.SetDeploymentPausedRequest
) -> pb.SetDeploymentPausedResponse:
    deployment_id = parse_id(req.id, "id")
    now = svc.clock()
    withdrawn: list[str] = []
    async with svc.db.transaction() as session:
        await fetch(session, deployment_id)
        await session.execute(
            update(deployments).where(deployments.c.id == deployment_id).values(paused=req.paused, updated=now)
        )
        if req.paused:
            withdrawn = await _withdraw_scheduled(session, deployment_id)
        else:
            # Schedules start again from now: the runs missed while paused are not made up.
            await session.execute(
                update(schedule_table).where(schedule_table.c.deployment_id == deployment_id).values(cursor=now)
            )
        row = await fetch(session, deployment_id)
        await svc.outbox.add(session, [_event("paused" if req.paused else "resumed", row, now)])
        out = await _to_pb(session, row)
    await _delete_remote(orch, withdrawn)
    return pb.SetDeploymentPausedResponse(deployment=out)
