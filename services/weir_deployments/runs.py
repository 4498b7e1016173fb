"""Flow runs of deployments: created here first, then in orchestration.

A run is written to ``deployment_runs`` as ``NEW`` (with what orchestration
needs to create it) in one local transaction, then created in orchestration
with the same id and marked ``SCHEDULED``. If orchestration is away, the run
stays ``NEW`` and ``materialize`` creates it later (the sweeper retries), so
an accepted request is never lost; the create is idempotent by id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from weir._proto import timestamp_to_datetime
from weir.errors import FailedPrecondition, InvalidArgument
from weir.v1 import deployments_pb2 as pb
from weir_deployments import deployments, job_variables
from weir_deployments.models import REFUSED, deployment_runs
from weir_deployments.parameters import check_parameters
from weir_deployments.proto import check_name, parse_id, struct_to_dict
from weir_deployments.remote import Orchestration
from weir_deployments.sql import insert_ignore
from weir_deployments.work_pools import fetch_pool, fetch_queue
from weir_kit.events import new_event, resource
from weir_kit.runtime import ServiceContext
from weir_kit.values import short_text

log = logging.getLogger("weir.deployments.runs")

#: Namespace of run ids derived from (deployment, idempotency key) or (schedule, time).
RUN_NAMESPACE = uuid.UUID("5b0c1c62-5f1e-4d54-9a53-3f0c8a4e2d11")


def layers(pool: Any, deployment: Any, run_vars: dict[str, Any] | None) -> list[tuple[str, Any]]:
    template = pool.base_job_template
    return [
        ("work pool defaults", job_variables.defaults(template)),
        ("deployment", deployment.job_variables),
        ("flow run", run_vars or {}),
    ]


def job_configuration(pool: Any, deployment: Any, run_vars: dict[str, Any] | None) -> dict[str, Any]:
    """What a worker gets: the merged job variables, the deployment's directory as the default cwd."""
    merged = job_variables.merge_layers(pool.base_job_template, layers(pool, deployment, run_vars))
    if not merged.get("working_dir") and deployment.working_directory:
        merged["working_dir"] = deployment.working_directory
    return merged


def create_request(
    deployment: Any,
    scheduled_time: datetime,
    *,
    parameters: dict[str, Any],
    tags: Sequence[str] = (),
    name: str = "",
    idempotency_key: str = "",
    parent_task_run_id: str = "",
) -> dict[str, Any]:
    return {
        "parent_task_run_id": parent_task_run_id,
        "flow_name": deployment.flow_name,
        "deployment_id": deployment.id,
        "parameters": parameters,
        "tags": sorted(set(deployment.tags) | set(tags)),
        "name": name,
        "idempotency_key": idempotency_key,
        "scheduled_time": scheduled_time.isoformat(),
        "retries": deployment.retries,
        "retry_delay_seconds": list(deployment.retry_delay_seconds),
    }


def new_row(
    flow_run_id: str,
    deployment: Any,
    queue: str,
    scheduled_time: datetime,
    request: dict[str, Any],
    now: datetime,
    *,
    job_vars: dict[str, Any] | None = None,
    schedule_id: str | None = None,
) -> dict[str, Any]:
    return {
        "flow_run_id": flow_run_id,
        "deployment_id": deployment.id,
        "schedule_id": schedule_id,
        "work_pool_name": deployment.work_pool_name,
        "work_queue_name": queue,
        "scheduled_time": scheduled_time,
        "status": "NEW",
        "create_request": request,
        "job_variables": job_vars or {},
        "acked": False,
        "created": now,
        "updated": now,
    }


async def create_from_deployment(
    svc: ServiceContext, orch: Orchestration, req: pb.CreateFlowRunFromDeploymentRequest
) -> tuple[pb.CreateFlowRunFromDeploymentResponse, str]:
    """Create a run; returns the answer and the pool to wake."""
    deployment_id = parse_id(req.deployment_id, "deployment_id")
    # Checked as orchestration will check them: a run accepted here that orchestration then
    # refuses to create would never exist, however often it is retried.
    key = short_text(req.idempotency_key.strip(), "idempotency_key")
    name = short_text(req.name, "name")
    now = svc.clock()
    scheduled = timestamp_to_datetime(req.scheduled_time) if req.HasField("scheduled_time") else None
    run_vars = struct_to_dict(req.job_variables)
    async with svc.db.transaction() as session:
        dep = await deployments.fetch(session, deployment_id, "deployment_id")
        if dep.paused:
            raise FailedPrecondition(f"deployment {dep.flow_name}/{dep.name} is paused", field="deployment_id")
        if not dep.work_pool_name:
            raise FailedPrecondition(
                f"deployment {dep.flow_name}/{dep.name} has no work pool: nothing would run it",
                field="deployment_id",
            )
        pool = await fetch_pool(session, dep.work_pool_name)
        if pool.paused:
            raise FailedPrecondition(f"work pool {pool.name!r} is paused", field="deployment_id")
        queue = check_name(req.work_queue_name, "work_queue_name", required=False)
        queue = queue or dep.work_queue_name or pool.default_queue_name
        await fetch_queue(session, pool.name, queue)
        parameters = {**dep.parameters, **struct_to_dict(req.parameters)}
        check_parameters(dep.parameter_schema, parameters, "parameters", partial=False)
        problem = job_variables.validate_layers(pool.base_job_template, layers(pool, dep, run_vars))
        if problem is not None:
            job_variables.raise_problem(problem, "job_variables")
        flow_run_id = str(uuid.uuid5(RUN_NAMESPACE, f"{dep.id}/{key}")) if key else str(uuid.uuid4())
        when = scheduled or now
        parent = parse_id(req.parent_task_run_id, "parent_task_run_id") if req.parent_task_run_id else ""
        request = create_request(
            dep,
            when,
            parameters=parameters,
            tags=req.tags,
            name=name,
            idempotency_key=key,
            parent_task_run_id=parent,
        )
        row = new_row(flow_run_id, dep, queue, when, request, now, job_vars=run_vars)
        inserted = await session.execute(insert_ignore(svc.db, deployment_runs).values(row))
    done, refused = await _materialize(svc, orch, [flow_run_id])
    # The request was checked above as orchestration checks it: a refusal means the two disagree.
    if flow_run_id in refused:
        raise refused[flow_run_id]
    if not done and not inserted.rowcount:
        async with svc.db.read() as session:
            if await _refused_before(session, flow_run_id):
                raise InvalidArgument(
                    f"orchestration refused to create flow run {flow_run_id} earlier: "
                    "its weir.deployment.run-refused event says why"
                )
    return pb.CreateFlowRunFromDeploymentResponse(flow_run_id=flow_run_id, created=bool(inserted.rowcount)), pool.name


async def materialize(svc: ServiceContext, orch: Orchestration, flow_run_ids: Sequence[str]) -> int:
    """Create ``NEW`` runs in orchestration and mark them ``SCHEDULED``; returns how many."""
    return len((await _materialize(svc, orch, flow_run_ids))[0])


async def _materialize(
    svc: ServiceContext, orch: Orchestration, flow_run_ids: Sequence[str]
) -> tuple[list[str], dict[str, InvalidArgument]]:
    """The runs created in orchestration, and those it refused.

    A run orchestration refuses as invalid would be refused on every retry: it is kept as
    ``REFUSED`` (state FAILED, "Refused") instead, with a ``weir.deployment.run-refused`` event
    carrying the reason. Any other error leaves the run ``NEW`` for the sweeper.
    """
    c = deployment_runs.c
    async with svc.db.read() as session:
        query = select(c.flow_run_id, c.deployment_id, c.create_request).where(
            c.flow_run_id.in_(list(flow_run_ids)), c.status == "NEW"
        )
        rows = (await session.execute(query)).all()
    if not rows:
        return [], {}
    results = await asyncio.gather(
        *(orch.create_run(r.flow_run_id, r.create_request) for r in rows), return_exceptions=True
    )
    done: list[str] = []
    refused: list[tuple[Any, InvalidArgument]] = []
    for row, result in zip(rows, results, strict=True):
        if isinstance(result, InvalidArgument):
            log.error(
                "flow run %s of deployment %s refused by orchestration: %s", row.flow_run_id, row.deployment_id, result
            )
            refused.append((row, result))
        elif isinstance(result, BaseException):
            log.warning("flow run %s not created in orchestration yet: %s", row.flow_run_id, result)
        else:
            done.append(row.flow_run_id)
    if done or refused:
        now = svc.clock()
        async with svc.db.transaction() as session:
            await mark_scheduled(session, done, now)
            await _mark_refused(session, svc, refused, now)
    return done, {row.flow_run_id: error for row, error in refused}


async def _mark_refused(
    session: AsyncSession, svc: ServiceContext, refused: Sequence[tuple[Any, InvalidArgument]], now: datetime
) -> None:
    if not refused:
        return
    c = deployment_runs.c
    marked = await session.execute(
        update(deployment_runs)
        .where(c.flow_run_id.in_([row.flow_run_id for row, _ in refused]), c.status == "NEW")
        .values(status=REFUSED, state_type="FAILED", state_name="Refused", state_timestamp=now, updated=now)
        .returning(c.flow_run_id)
    )
    kept = set(marked.scalars())
    events = [
        new_event(
            "weir.deployment.run-refused",
            resource(f"weir.deployment.{row.deployment_id}"),
            occurred=now,
            related=[resource(f"weir.flow-run.{row.flow_run_id}", role="flow-run")],
            payload={"reason": f"orchestration refused to create the run: {error}"},
        )
        for row, error in refused
        if row.flow_run_id in kept
    ]
    if events:
        await svc.outbox.add(session, events)


async def _refused_before(session: AsyncSession, flow_run_id: str) -> bool:
    c = deployment_runs.c
    query = select(c.status).where(c.flow_run_id == flow_run_id)
    return (await session.execute(query)).scalar() == REFUSED


async def mark_scheduled(session: AsyncSession, flow_run_ids: Sequence[str], now: datetime) -> None:
    c = deployment_runs.c
    await session.execute(
        update(deployment_runs)
        .where(and_(c.flow_run_id.in_(list(flow_run_ids)), c.status == "NEW"))
        .values(status="SCHEDULED", create_request=None, updated=now)
    )


async def pending_materialization(svc: ServiceContext, older_than: datetime, limit: int = 200) -> list[str]:
    c = deployment_runs.c
    async with svc.db.read() as session:
        query = select(c.flow_run_id).where(c.status == "NEW", c.created < older_than).limit(limit)
        return [r.flow_run_id for r in (await session.execute(query)).all()]


async def check_job_variables(svc: ServiceContext, req: pb.ValidateJobVariablesRequest) -> job_variables.Problem | None:
    """The dry run of ``weir deployment validate``: the first bad layer, or None when all are good."""
    run_vars = struct_to_dict(req.job_variables)
    async with svc.db.read() as session:
        if req.deployment_id:
            dep: Any = await deployments.fetch(session, parse_id(req.deployment_id, "deployment_id"), "deployment_id")
        elif req.HasField("deployment"):
            draft = req.deployment
            dep = _Draft(struct_to_dict(draft.job_variables), draft.working_directory, draft.work_pool_name)
        else:
            raise InvalidArgument("give deployment_id or a draft deployment", field="deployment_id")
        pool_name = check_name(dep.work_pool_name, "deployment.work_pool_name")
        pool = await fetch_pool(session, pool_name, "deployment.work_pool_name")
    return job_variables.validate_layers(pool.base_job_template, layers(pool, dep, run_vars))


class _Draft:
    """The parts of a not-yet-stored deployment that job-variable validation reads."""

    def __init__(self, job_variables: dict[str, Any], working_directory: str, work_pool_name: str) -> None:
        self.job_variables = job_variables
        self.working_directory = working_directory
        self.work_pool_name = work_pool_name
