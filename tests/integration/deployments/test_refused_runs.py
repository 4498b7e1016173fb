"""A run of a deployment that orchestration refuses to create, found by the background path (the
scheduler, the sweeper): it is kept as REFUSED (state FAILED, "Refused") with an event saying why,
not retried forever, and a schedule makes no new runs in its place. The synchronous path checks
the request as orchestration will, so such a run can only come from rows stored before those
checks, or from the two services disagreeing; the tests write such rows into the deployments
database themselves."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import grpc
from sqlalchemy import insert, select, update

from weir.v1 import deployments_pb2 as pb
from weir.v1 import events_pb2, events_pb2_grpc
from weir.v1 import orchestration_pb2 as opb
from weir_deployments import deployments as deployment_rows
from weir_deployments import runs
from weir_deployments.models import deployment_runs, deployments

from .conftest import Api
from .test_service import expect, make_deployment, make_pool


def _deployments(dthread: Any) -> Any:
    (hosted,) = [h for h in dthread.stack.hosted if h.name == "deployments"]
    return hosted


async def _insert_new_rows(hosted: Any, deployment_id: str, names: dict[str, str]) -> None:
    """``NEW`` rows (flow run id -> run name), as the scheduler writes them, a minute old."""
    svc = hosted.ctx
    then = svc.clock() - timedelta(minutes=1)
    async with svc.db.transaction() as session:
        deployment = await deployment_rows.fetch(session, deployment_id)
        for run_id, name in names.items():
            request = runs.create_request(deployment, then, parameters={}, name=name)
            row = runs.new_row(run_id, deployment, "default", then, request, then)
            await session.execute(insert(deployment_runs).values(row))


async def _rows(hosted: Any, run_ids: list[str]) -> dict[str, Any]:
    async with hosted.ctx.db.read() as session:
        query = select(deployment_runs).where(deployment_runs.c.flow_run_id.in_(run_ids))
        return {r.flow_run_id: r for r in (await session.execute(query)).all()}


async def test_a_run_orchestration_refuses_is_marked_refused_not_retried(dthread: Any, api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name)
    hosted = _deployments(dthread)
    bad, good = str(uuid.uuid4()), str(uuid.uuid4())
    dthread.run(_insert_new_rows(hosted, dep.id, {bad: "n" * 300, good: "fine"}))

    dthread.run(hosted.runtime.sweeper.sweep_once())  # the background sweeper may have been first
    rows = dthread.run(_rows(hosted, [bad, good]))
    assert (rows[bad].status, rows[bad].state_type, rows[bad].state_name) == ("REFUSED", "FAILED", "Refused")
    assert rows[good].status != "NEW"
    await expect(api.orchestration.GetFlowRun(opb.GetFlowRunRequest(id=bad)), grpc.StatusCode.NOT_FOUND)
    created = (await api.orchestration.GetFlowRun(opb.GetFlowRunRequest(id=good))).flow_run
    assert created.deployment_id == dep.id

    # Not asked again: the next sweep finds nothing to create.
    assert dthread.run(runs.materialize(hosted.ctx, hosted.runtime.orch, [bad])) == 0

    events = events_pb2_grpc.EventServiceStub(api.channel)
    request = events_pb2.ListEventsRequest(
        filter=events_pb2.EventFilter(
            event_prefixes=["weir.deployment.run-refused"], resource_ids=[f"weir.deployment.{dep.id}"]
        )
    )
    deadline = time.monotonic() + 10
    while not (found := (await events.ListEvents(request)).events) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    (event,) = found
    assert [r for r in event.related if r.labels["weir.resource.id"] == f"weir.flow-run.{bad}"]
    assert "name" in event.payload["reason"] and "orchestration refused" in event.payload["reason"]


async def test_a_request_for_a_refused_run_is_invalid_argument(dthread: Any, api: Api) -> None:
    # The request is good, but its idempotency key names a run orchestration refuses: the caller
    # hears so, now and on every repeat, instead of an id of a run that will never exist.
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name)
    hosted = _deployments(dthread)
    key = f"key-{uuid.uuid4()}"
    run_id = str(uuid.uuid5(runs.RUN_NAMESPACE, f"{dep.id}/{key}"))
    # Held off: the background sweeper would otherwise race the first call to the row (and give
    # it the answer for a repeat).
    sweeper = hosted.runtime.sweeper
    dthread.run(sweeper.stop())
    try:
        dthread.run(_insert_new_rows(hosted, dep.id, {run_id: "n" * 300}))
        request = pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep.id, idempotency_key=key)
        first = await expect(api.deployments.CreateFlowRunFromDeployment(request), grpc.StatusCode.INVALID_ARGUMENT)
        assert "name" in (first.details() or "")  # orchestration's own reason
        again = await expect(api.deployments.CreateFlowRunFromDeployment(request), grpc.StatusCode.INVALID_ARGUMENT)
        assert f"orchestration refused to create flow run {run_id} earlier" in (again.details() or "")
        assert dthread.run(_rows(hosted, [run_id]))[run_id].status == "REFUSED"
    finally:
        dthread.run(_start(sweeper))


async def _start(loop: Any) -> None:
    loop.start()  # on the stack's event loop, where its task must live


async def _break_deployment(hosted: Any, deployment_id: str) -> None:
    """Give a deployment a value orchestration refuses on every run, as a row an older version stored."""
    async with hosted.ctx.db.transaction() as session:
        query = update(deployments).where(deployments.c.id == deployment_id).values(retries=-1, paused=False)
        await session.execute(query)


async def _statuses(hosted: Any, deployment_id: str) -> list[str]:
    async with hosted.ctx.db.read() as session:
        query = select(deployment_runs.c.status).where(deployment_runs.c.deployment_id == deployment_id)
        return sorted((await session.execute(query)).scalars())


async def test_a_schedule_whose_runs_are_refused_stops_until_the_deployment_is_fixed(dthread: Any, api: Api) -> None:
    pool = await make_pool(api)
    hourly = pb.Schedule(interval_seconds=3600, active=True)
    dep = await make_deployment(api, pool.name, schedules=[hourly], paused=True)
    hosted = _deployments(dthread)
    dthread.run(_break_deployment(hosted, dep.id))
    scheduler = hosted.runtime.scheduler
    minimum = hosted.runtime.settings.scheduler_min_runs
    # The background scheduler runs too (every 0.5 s here), and one round skips a schedule the
    # other holds: wait for the rounds to settle, then check that more rounds change nothing.
    refused = ["REFUSED"] * minimum
    await _settled(dthread, hosted, dep.id, lambda statuses: statuses == refused)
    for _ in range(5):
        dthread.run(scheduler.schedule_once())
    # The refused runs stand in for the ones the schedule keeps ahead: no new ones replace them.
    assert dthread.run(_statuses(hosted, dep.id)) == refused

    # Fixed by an upsert: the refused runs are withdrawn and the schedule makes good ones.
    msg = pb.Deployment(flow_name=dep.flow_name, name=dep.name, work_pool_name=pool.name, schedules=[hourly])
    await api.deployments.UpsertDeployment(pb.UpsertDeploymentRequest(deployment=msg))
    statuses = await _settled(dthread, hosted, dep.id, lambda s: len(s) >= minimum and "NEW" not in s)
    assert set(statuses) == {"SCHEDULED"}


async def _settled(dthread: Any, hosted: Any, deployment_id: str, done: Any) -> list[str]:
    """The deployment's run statuses once ``done`` holds for them (10 s at most)."""
    deadline = time.monotonic() + 10
    while not done(statuses := dthread.run(_statuses(hosted, deployment_id))) and time.monotonic() < deadline:
        dthread.run(hosted.runtime.scheduler.schedule_once())
        await asyncio.sleep(0.05)
    return statuses
