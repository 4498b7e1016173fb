"""Task runs over real gRPC: create (idempotent), read, list, filter, page, delete."""

from __future__ import annotations

import grpc

from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb

from .helpers import expect_error, new_flow_run, new_task_run, set_task_state, uid


async def test_create_is_idempotent_by_id_and_by_call_key(orch):
    run = await new_flow_run(orch.stub)
    task_id = uid()
    req = pb.CreateTaskRunRequest(id=task_id, flow_run_id=run.id, task_key="t", dynamic_key="h-0", tags=["x"])
    first = await orch.stub.CreateTaskRun(req)
    again = await orch.stub.CreateTaskRun(req)
    assert first.created and not again.created and again.task_run.id == task_id
    same_call = await orch.stub.CreateTaskRun(
        pb.CreateTaskRunRequest(id=uid(), flow_run_id=run.id, task_key="t", dynamic_key="h-0")
    )
    assert not same_call.created and same_call.task_run.id == task_id
    other = await orch.stub.CreateTaskRun(pb.CreateTaskRunRequest(flow_run_id=run.id, task_key="t", dynamic_key="h-1"))
    assert other.created
    assert await orch.count("task_runs") == 2
    assert first.task_run.state.type == common_pb2.PENDING and list(first.task_run.tags) == ["x"]


async def test_create_needs_an_existing_flow_run(orch):
    missing = uid()
    await expect_error(
        orch.stub.CreateTaskRun(pb.CreateTaskRunRequest(flow_run_id=missing, task_key="t")),
        grpc.StatusCode.NOT_FOUND,
        missing,
    )
    await expect_error(
        orch.stub.CreateTaskRun(pb.CreateTaskRunRequest(flow_run_id="x", task_key="t")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "flow_run_id",
    )


async def test_get_list_filter_page_delete(orch):
    run = await new_flow_run(orch.stub)
    other = await new_flow_run(orch.stub)
    made = [await new_task_run(orch.stub, run.id, name=f"step-{i}", tags=["t"] if i % 2 else []) for i in range(5)]
    await new_task_run(orch.stub, other.id)
    await set_task_state(orch.stub, made[0].id, common_pb2.RUNNING)
    got = (await orch.stub.GetTaskRun(pb.GetTaskRunRequest(id=made[0].id))).task_run
    assert got.state.type == common_pb2.RUNNING and got.run_count == 1 and got.flow_run_id == run.id

    async def ids(**filter_fields):
        resp = await orch.stub.ListTaskRuns(pb.ListTaskRunsRequest(filter=pb.TaskRunFilter(**filter_fields)))
        return [r.id for r in resp.task_runs]

    assert set(await ids(flow_run_ids=[run.id])) == {t.id for t in made}
    assert await ids(flow_run_ids=[run.id], state_types=[common_pb2.RUNNING]) == [made[0].id]
    assert set(await ids(flow_run_ids=[run.id], tags_all=["t"])) == {made[1].id, made[3].id}
    assert await ids(flow_run_ids=[run.id], name_like="STEP-4") == [made[4].id]

    seen, token = [], ""
    while True:
        resp = await orch.stub.ListTaskRuns(
            pb.ListTaskRunsRequest(
                filter=pb.TaskRunFilter(flow_run_ids=[run.id]),
                page=common_pb2.PageRequest(page_size=2, page_token=token),
            )
        )
        seen += [r.id for r in resp.task_runs]
        token = resp.next_page_token
        if not token:
            break
    assert seen == [t.id for t in reversed(made)]

    await orch.stub.DeleteTaskRun(pb.DeleteTaskRunRequest(id=made[0].id))
    await expect_error(orch.stub.GetTaskRun(pb.GetTaskRunRequest(id=made[0].id)), grpc.StatusCode.NOT_FOUND, made[0].id)
    await expect_error(orch.stub.DeleteTaskRun(pb.DeleteTaskRunRequest(id=made[0].id)), grpc.StatusCode.NOT_FOUND)


async def test_deleting_a_flow_run_deletes_its_task_runs(orch):
    run = await new_flow_run(orch.stub)
    await new_task_run(orch.stub, run.id)
    await orch.stub.DeleteFlowRun(pb.DeleteFlowRunRequest(id=run.id))
    assert await orch.count("task_runs") == 0
    assert await orch.count("run_states") == 0
