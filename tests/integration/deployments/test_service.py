"""The deployments service over real gRPC: pools, queues, deployments,
runs from deployments, and the worker stream (claims, fencing, limits,
repairs), on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from weir._proto import dict_to_struct, to_timestamp
from weir.v1 import common_pb2
from weir.v1 import deployments_pb2 as pb
from weir.v1 import orchestration_pb2 as opb

from .conftest import Api, FakeWorker, unique


async def expect(call: Any, code: grpc.StatusCode, field: str | None = None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    if field is not None:
        fields = dict(info.value.trailing_metadata() or ()).get("weir-field")
        assert fields == field, (fields, info.value.details())
    return info.value


async def make_pool(api: Api, **fields: Any) -> pb.WorkPool:
    name = fields.pop("name", unique("pool"))
    resp = await api.deployments.UpsertWorkPool(pb.UpsertWorkPoolRequest(work_pool=pb.WorkPool(name=name, **fields)))
    return resp.work_pool


async def make_deployment(api: Api, pool: str, **fields: Any) -> pb.Deployment:
    msg = pb.Deployment(
        flow_name=fields.pop("flow_name", unique("flow")),
        name=fields.pop("name", "prod"),
        work_pool_name=pool,
        **fields,
    )
    return (await api.deployments.UpsertDeployment(pb.UpsertDeploymentRequest(deployment=msg))).deployment


async def run_of(api: Api, deployment_id: str, **fields: Any) -> str:
    req = pb.CreateFlowRunFromDeploymentRequest(deployment_id=deployment_id, **fields)
    return (await api.deployments.CreateFlowRunFromDeployment(req)).flow_run_id


async def flow_run(api: Api, flow_run_id: str) -> opb.FlowRun:
    return (await api.orchestration.GetFlowRun(opb.GetFlowRunRequest(id=flow_run_id))).flow_run


async def propose(api: Api, flow_run_id: str, state_type: int, token: str = "") -> opb.ProposalResult:
    proposal = opb.StateProposal(state=common_pb2.State(type=state_type), fencing_token=token)
    req = opb.SetFlowRunStateRequest(flow_run_id=flow_run_id, proposal=proposal)
    return (await api.orchestration.SetFlowRunState(req)).result


async def eventually(check: Any, timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------ pools & queues


async def test_pool_upsert_is_idempotent_and_has_a_default_queue(api: Api) -> None:
    pool = await make_pool(api, concurrency_limit=3)
    again = await make_pool(api, name=pool.name, concurrency_limit=5, description="more")
    assert again.id == pool.id and again.concurrency_limit == 5 and again.description == "more"
    assert "variables" in dict(again.base_job_template)
    queues = (await api.deployments.ListWorkQueues(pb.ListWorkQueuesRequest(work_pool_name=pool.name))).work_queues
    assert [q.name for q in queues] == ["default"]
    paused = await api.deployments.SetWorkPoolPaused(pb.SetWorkPoolPausedRequest(name=pool.name, paused=True))
    assert paused.work_pool.paused


async def test_pool_and_queue_errors_name_the_field(api: Api) -> None:
    await expect(
        api.deployments.GetWorkPool(pb.GetWorkPoolRequest(name="nope-" + unique("x"))), grpc.StatusCode.NOT_FOUND
    )
    bad = pb.WorkPool(name=unique("pool"), type="k8s")
    await expect(
        api.deployments.UpsertWorkPool(pb.UpsertWorkPoolRequest(work_pool=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "work_pool.base_job_template",
    )
    pool = await make_pool(api)
    queue = pb.WorkQueue(work_pool_name=pool.name, name="q", concurrency_limit=-1)
    await expect(
        api.deployments.UpsertWorkQueue(pb.UpsertWorkQueueRequest(work_queue=queue)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "work_queue.concurrency_limit",
    )
    await expect(
        api.deployments.DeleteWorkQueue(pb.DeleteWorkQueueRequest(work_pool_name=pool.name, name="default")),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


# ------------------------------------------------------------------ deployments


async def test_deployment_upsert_read_list(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(
        api,
        pool.name,
        tags=["b", "a"],
        entrypoint="flows.py:hello",
        parameters=dict_to_struct({"n": 1}),
        schedules=[pb.Schedule(cron="0 9 * * *", timezone="Europe/Paris", active=True)],
    )
    again = await make_deployment(api, pool.name, flow_name=dep.flow_name, name=dep.name, description="v2")
    assert again.id == dep.id and again.description == "v2" and list(again.schedules) == []
    by_name = await api.deployments.GetDeployment(pb.GetDeploymentRequest(full_name=f"{dep.flow_name}/{dep.name}"))
    assert by_name.deployment.id == dep.id
    listed = await api.deployments.ListDeployments(pb.ListDeploymentsRequest(flow_name=dep.flow_name))
    assert [d.id for d in listed.deployments] == [dep.id]
    assert list(dep.tags) == ["a", "b"] and dep.schedules[0].cron == "0 9 * * *"


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (pb.Schedule(cron="61 * * * *"), "deployment.schedules[0].cron"),
        (pb.Schedule(rrule="FREQ=SOMETIMES"), "deployment.schedules[0].rrule"),
        (pb.Schedule(cron="0 * * * *", timezone="Mars/Olympus"), "deployment.schedules[0].timezone"),
        (pb.Schedule(interval_seconds=-5), "deployment.schedules[0].interval_seconds"),
    ],
)
async def test_invalid_schedules_are_invalid_argument_naming_the_field(
    api: Api, schedule: pb.Schedule, field: str
) -> None:
    pool = await make_pool(api)
    msg = pb.Deployment(flow_name=unique("flow"), name="d", work_pool_name=pool.name, schedules=[schedule])
    await expect(
        api.deployments.UpsertDeployment(pb.UpsertDeploymentRequest(deployment=msg)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )


async def test_an_rrule_that_never_fires_is_refused_without_stalling_the_service(api: Api) -> None:
    # dateutil searches to year 9999 (seconds) to prove this rule empty; other calls are served meanwhile.
    pool = await make_pool(api)
    never = pb.Schedule(rrule="FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30")
    msg = pb.Deployment(flow_name=unique("flow"), name="d", work_pool_name=pool.name, schedules=[never])
    slow = asyncio.ensure_future(api.deployments.UpsertDeployment(pb.UpsertDeploymentRequest(deployment=msg)))
    await asyncio.sleep(0.2)  # the check is under way
    await api.deployments.GetWorkPool(pb.GetWorkPoolRequest(name=pool.name))
    assert not slow.done()  # answered while the rule was still being searched
    err = await expect(slow, grpc.StatusCode.INVALID_ARGUMENT, "deployment.schedules[0].rrule")
    assert "never produces a time" in err.details()


async def test_job_variables_are_validated_layer_by_layer(api: Api) -> None:
    pool = await make_pool(api)
    msg = pb.Deployment(
        flow_name=unique("flow"), name="d", work_pool_name=pool.name, job_variables=dict_to_struct({"env": {"A": 1}})
    )
    err = await expect(
        api.deployments.UpsertDeployment(pb.UpsertDeploymentRequest(deployment=msg)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "deployment" in err.details() and "env" in err.details()
    dep = await make_deployment(api, pool.name, job_variables=dict_to_struct({"env": {"A": "1"}}))
    check = await api.deployments.ValidateJobVariables(
        pb.ValidateJobVariablesRequest(deployment_id=dep.id, job_variables=dict_to_struct({"nope": True}))
    )
    assert not check.valid and check.layer == "flow run" and "nope" in (check.field + check.message)
    ok = await api.deployments.ValidateJobVariables(
        pb.ValidateJobVariablesRequest(deployment_id=dep.id, job_variables=dict_to_struct({"env": {"B": "2"}}))
    )
    assert ok.valid
    await expect(
        api.deployments.CreateFlowRunFromDeployment(
            pb.CreateFlowRunFromDeploymentRequest(
                deployment_id=dep.id, job_variables=dict_to_struct({"working_dir": 5})
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_parameters_are_checked_against_the_schema(api: Api) -> None:
    pool = await make_pool(api)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    dep = await make_deployment(api, pool.name, parameter_schema=dict_to_struct(schema))
    await expect(
        api.deployments.CreateFlowRunFromDeployment(pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep.id)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect(
        api.deployments.CreateFlowRunFromDeployment(
            pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep.id, parameters=dict_to_struct({"n": "x"}))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "parameters.n",
    )
    run_id = await run_of(api, dep.id, parameters=dict_to_struct({"n": 4}))
    run = await flow_run(api, run_id)
    assert dict(run.parameters) == {"n": 4} and run.deployment_id == dep.id
    assert run.state.type == common_pb2.SCHEDULED


async def test_runs_of_paused_deployment_or_pool_are_failed_precondition(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name)
    await api.deployments.SetDeploymentPaused(pb.SetDeploymentPausedRequest(id=dep.id, paused=True))
    await expect(
        api.deployments.CreateFlowRunFromDeployment(pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await api.deployments.SetDeploymentPaused(pb.SetDeploymentPausedRequest(id=dep.id, paused=False))
    await api.deployments.SetWorkPoolPaused(pb.SetWorkPoolPausedRequest(name=pool.name, paused=True))
    await expect(
        api.deployments.CreateFlowRunFromDeployment(pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await expect(
        api.deployments.CreateFlowRunFromDeployment(pb.CreateFlowRunFromDeploymentRequest(deployment_id="not-a-uuid")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "deployment_id",
    )


async def test_create_run_is_idempotent_by_key(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name)
    first = await api.deployments.CreateFlowRunFromDeployment(
        pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep.id, idempotency_key="k")
    )
    again = await api.deployments.CreateFlowRunFromDeployment(
        pb.CreateFlowRunFromDeploymentRequest(deployment_id=dep.id, idempotency_key="k")
    )
    assert first.created and not again.created and first.flow_run_id == again.flow_run_id


async def test_interval_schedule_creates_runs_ahead_once(api: Api) -> None:
    pool = await make_pool(api)
    schedule = pb.Schedule(interval_seconds=600, active=True)
    dep = await make_deployment(api, pool.name, schedules=[schedule])

    async def runs() -> list[opb.FlowRun]:
        req = opb.ListFlowRunsRequest(filter=opb.FlowRunFilter(deployment_id=dep.id))
        return list((await api.orchestration.ListFlowRuns(req)).flow_runs)

    await eventually(lambda: _at_least(runs, 3))
    found = await _settled(runs)  # the scheduler's round may still be creating them
    times = sorted(r.expected_start_time.ToDatetime() for r in found)
    assert all((b - a) == timedelta(seconds=600) for a, b in itertools.pairwise(times))
    # A re-deploy with the same schedule keeps its cursor: no second run for any time.
    await make_deployment(api, pool.name, flow_name=dep.flow_name, name=dep.name, schedules=[schedule])
    again = await _settled(runs)
    assert len({r.expected_start_time.ToDatetime() for r in again}) == len(again)
    assert {r.id for r in again} == {r.id for r in found}
    # Pausing withdraws the runs that have not started.
    await api.deployments.SetDeploymentPaused(pb.SetDeploymentPausedRequest(id=dep.id, paused=True))
    assert await runs() == []


async def _settled(fetch: Any) -> list[Any]:
    """What ``fetch`` returns once two reads a scheduler round apart agree."""
    last = await fetch()
    while True:
        await asyncio.sleep(1.2)
        now = await fetch()
        if {r.id for r in now} == {r.id for r in last}:
            return now
        last = now


async def _at_least(fetch: Any, n: int) -> Any:
    items = await fetch()
    return items if len(items) >= n else None


# ------------------------------------------------------------------ worker stream


async def test_stream_errors(api: Api) -> None:
    call = api.workers.Connect()
    await call.write(pb.WorkerMessage(credit=pb.Credit(free_slots=1)))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    call = api.workers.Connect()
    await call.write(pb.WorkerMessage(hello=pb.Hello(worker_name="w", work_pool_name=unique("missing"), free_slots=1)))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_run_is_pushed_to_a_connected_worker_and_fenced(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(
        api, pool.name, entrypoint="flows.py:f", job_variables=dict_to_struct({"env": {"X": "1"}})
    )
    worker = await FakeWorker.connect(api, pool.name, "w1", slots=1)
    try:
        run_id = await run_of(api, dep.id, job_variables=dict_to_struct({"env": {"Y": "2"}}))
        assign = await worker.next("assign")
        assert assign.flow_run_id == run_id and assign.entrypoint == "flows.py:f" and assign.fencing_token
        config = dict(assign.job_configuration)
        assert dict(config["env"]) == {"X": "1", "Y": "2"}
        run = await flow_run(api, run_id)
        assert run.state.type == common_pb2.PENDING and run.state.details.fencing_token == assign.fencing_token
        await worker.send(ack=pb.AssignmentAck(flow_run_id=run_id, fencing_token=assign.fencing_token))
        stale = await propose(api, run_id, common_pb2.RUNNING, token="not-the-token")
        assert stale.decision == opb.REJECT and "stale" in stale.reason
        ok = await propose(api, run_id, common_pb2.RUNNING, token=assign.fencing_token)
        assert ok.decision == opb.ACCEPT
        assert (await flow_run(api, run_id)).state.details.fencing_token == assign.fencing_token
        await worker.send(heartbeat=pb.Heartbeat(active_flow_run_ids=[run_id]))
        assert list((await worker.next("heartbeat_ack")).cancel_flow_run_ids) == []
        # Cancelling the run pushes a Cancel to the worker holding it.
        await propose(api, run_id, common_pb2.CANCELLING)
        cancel = await worker.next("cancel")
        assert cancel.flow_run_id == run_id
        await worker.send(heartbeat=pb.Heartbeat(active_flow_run_ids=[run_id]))
        assert list((await worker.next("heartbeat_ack")).cancel_flow_run_ids) == [run_id]
        workers = (await api.deployments.ListWorkers(pb.ListWorkersRequest(work_pool_name=pool.name))).workers
        assert [(w.name, w.status) for w in workers] == [("w1", "ONLINE")]
    finally:
        await worker.close()


async def test_credit_limits_assignments_and_two_workers_never_share_a_run(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name)
    a = await FakeWorker.connect(api, pool.name, "a", slots=2)
    b = await FakeWorker.connect(api, pool.name, "b", slots=2)
    try:
        ids = {await run_of(api, dep.id) for _ in range(6)}
        got: list[str] = []
        for worker in (a, b):
            for _ in range(2):
                got.append((await worker.next("assign")).flow_run_id)
        assert len(set(got)) == 4 and set(got) <= ids
        # No credit left: the other two wait until a worker grants more.
        with pytest.raises(TimeoutError):
            await a.next("assign", timeout=0.7)
        await a.send(credit=pb.Credit(free_slots=2))
        more = {(await a.next("assign")).flow_run_id for _ in range(2)}
        assert more == ids - set(got)
    finally:
        await a.close()
        await b.close()


async def test_deployment_concurrency_limit_enqueues_until_a_run_ends(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name, concurrency_limit=1)
    worker = await FakeWorker.connect(api, pool.name, "w", slots=5)
    try:
        first = await run_of(api, dep.id)
        second = await run_of(api, dep.id)
        assign = await worker.next("assign")
        assert assign.flow_run_id == first
        with pytest.raises(TimeoutError):
            await worker.next("assign", timeout=0.7)
        await propose(api, first, common_pb2.RUNNING, token=assign.fencing_token)
        await propose(api, first, common_pb2.COMPLETED, token=assign.fencing_token)
        assert (await worker.next("assign")).flow_run_id == second
    finally:
        await worker.close()


async def test_cancel_new_collision_strategy(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name, concurrency_limit=1, collision_strategy=pb.CANCEL_NEW)
    worker = await FakeWorker.connect(api, pool.name, "w", slots=5)
    try:
        first = await run_of(api, dep.id)
        await worker.next("assign")
        second = await run_of(api, dep.id)

        async def cancelled() -> bool:
            return (await flow_run(api, second)).state.type == common_pb2.CANCELLED

        await eventually(cancelled)
        assert (await flow_run(api, first)).state.type == common_pb2.PENDING
    finally:
        await worker.close()


async def test_unacked_assignment_goes_back_and_reaches_another_worker(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name)
    silent = await FakeWorker.connect(api, pool.name, "silent", slots=1)
    run_id = await run_of(api, dep.id)
    first = await silent.next("assign")
    other = await FakeWorker.connect(api, pool.name, "other", slots=1)
    try:
        # The silent worker never acks: after the ack timeout the run is given back and claimed again.
        second = await other.next("assign", timeout=15)
        assert second.flow_run_id == run_id and second.fencing_token != first.fencing_token
        late = await propose(api, run_id, common_pb2.RUNNING, token=first.fencing_token)
        assert late.decision == opb.REJECT
    finally:
        await silent.close()
        await other.close()


async def test_a_reconnecting_worker_keeps_its_runs(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name)
    worker = await FakeWorker.connect(api, pool.name, "w", slots=1)
    run_id = await run_of(api, dep.id)
    assign = await worker.next("assign")
    await worker.send(ack=pb.AssignmentAck(flow_run_id=run_id, fencing_token=assign.fencing_token))
    await propose(api, run_id, common_pb2.RUNNING, token=assign.fencing_token)
    await worker.close()  # the stream drops ...
    again = await FakeWorker.connect(api, pool.name, "w", slots=0)  # ... and the same worker comes back
    thief = await FakeWorker.connect(api, pool.name, "thief", slots=1)
    try:
        assert again.welcome.worker_id == assign_worker_id(again)
        await again.send(heartbeat=pb.Heartbeat(active_flow_run_ids=[run_id]))
        await again.next("heartbeat_ack")
        with pytest.raises(TimeoutError):
            await thief.next("assign", timeout=2.5)
        assert (await flow_run(api, run_id)).state.type == common_pb2.RUNNING
    finally:
        await again.close()
        await thief.close()


def assign_worker_id(worker: FakeWorker) -> str:
    return worker.welcome.worker_id


async def test_scheduled_time_in_the_future_waits(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name)
    worker = await FakeWorker.connect(api, pool.name, "w", slots=1)
    try:
        when = datetime.now(UTC) + timedelta(seconds=1.5)
        run_id = await run_of(api, dep.id, scheduled_time=to_timestamp(when))
        assign = await worker.next("assign", timeout=10)
        assert assign.flow_run_id == run_id
        assert datetime.now(UTC) >= when
    finally:
        await worker.close()


async def test_a_crashed_run_with_retries_left_goes_to_another_worker(api: Api) -> None:
    pool = await make_pool(api)
    dep = await make_deployment(api, pool.name, retries=1)
    doomed = await FakeWorker.connect(api, pool.name, "doomed", slots=1)
    run_id = await run_of(api, dep.id)
    first = await doomed.next("assign")
    await doomed.send(ack=pb.AssignmentAck(flow_run_id=run_id, fencing_token=first.fencing_token))
    assert (await propose(api, run_id, common_pb2.RUNNING, token=first.fencing_token)).decision == opb.ACCEPT
    await doomed.close()  # the worker and its run die: no more flow-run heartbeats
    rescuer = await FakeWorker.connect(api, pool.name, "rescuer", slots=1)
    try:
        # Orchestration's sweeper crashes it (heartbeat timeout), its retry policy reschedules it,
        # and the deployments sweeper hands it to a live worker with a new token.
        second = await rescuer.next("assign", timeout=20)
        assert second.flow_run_id == run_id and second.fencing_token != first.fencing_token
        states = await api.orchestration.ListStates(opb.ListStatesRequest(flow_run_id=run_id))
        names = [s.name for s in states.states]
        assert "Crashed" in names or "AwaitingRetry" in names, names
        assert (await propose(api, run_id, common_pb2.RUNNING, token=first.fencing_token)).decision == opb.REJECT
        assert (await propose(api, run_id, common_pb2.RUNNING, token=second.fencing_token)).decision == opb.ACCEPT
    finally:
        await rescuer.close()
