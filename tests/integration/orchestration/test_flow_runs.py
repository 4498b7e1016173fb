"""Flow runs over real gRPC: create (idempotent), read, list, filter, page, delete, heartbeat."""

from __future__ import annotations

from datetime import timedelta

import grpc

from weir._proto import to_timestamp
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb

from .helpers import expect_error, new_flow_run, set_flow_state, state, uid, unique


async def test_create_by_flow_name_creates_the_flow(orch):
    name = unique()
    run = await new_flow_run(orch.stub, flow_name=name, tags=["x"], parameters={"n": 3})
    assert run.flow_name == name and run.name  # a generated name
    assert run.state.type == common_pb2.PENDING and run.state.name == "Pending"
    assert dict(run.parameters) == {"n": 3}
    flow = (await orch.stub.GetFlow(pb.GetFlowRequest(name=name))).flow
    assert run.flow_id == flow.id


async def test_create_is_idempotent_by_key_and_by_id(orch):
    flow = (await orch.stub.CreateFlow(pb.CreateFlowRequest(name=unique()))).flow
    req = pb.CreateFlowRunRequest(flow_id=flow.id, idempotency_key="k1")
    first = await orch.stub.CreateFlowRun(req)
    again = await orch.stub.CreateFlowRun(req)
    assert first.created and not again.created and first.flow_run.id == again.flow_run.id
    run_id = uid()
    by_id = await orch.stub.CreateFlowRun(pb.CreateFlowRunRequest(flow_id=flow.id, id=run_id))
    by_id_again = await orch.stub.CreateFlowRun(pb.CreateFlowRunRequest(flow_id=flow.id, id=run_id))
    assert by_id.created and not by_id_again.created and by_id_again.flow_run.id == run_id
    assert await orch.count("flow_runs") == 2
    assert await orch.count("run_states") == 2  # one initial state each, not four


async def test_create_with_scheduled_state_sets_expected_start(orch):
    when = orch.clock() + timedelta(hours=1)
    run = await new_flow_run(orch.stub, state=state(common_pb2.SCHEDULED, scheduled_time=when))
    assert run.state.type == common_pb2.SCHEDULED
    assert run.expected_start_time.ToDatetime().replace(microsecond=0) == when.replace(tzinfo=None, microsecond=0)


async def test_create_with_unknown_flow_is_not_found(orch):
    await expect_error(
        orch.stub.CreateFlowRun(pb.CreateFlowRunRequest(flow_id=uid())), grpc.StatusCode.NOT_FOUND, "flow"
    )
    await expect_error(orch.stub.CreateFlowRun(pb.CreateFlowRunRequest()), grpc.StatusCode.INVALID_ARGUMENT, "flow_id")


async def test_list_filters_by_state_flow_tags_and_time(orch):
    a = await new_flow_run(orch.stub, tags=["red", "big"])
    b = await new_flow_run(orch.stub, flow_name=a.flow_name, tags=["red"])
    c = await new_flow_run(orch.stub, tags=["blue"])
    await set_flow_state(orch.stub, b.id, common_pb2.RUNNING)

    async def ids(**filter_fields):
        resp = await orch.stub.ListFlowRuns(pb.ListFlowRunsRequest(filter=pb.FlowRunFilter(**filter_fields)))
        return {r.id for r in resp.flow_runs}

    assert await ids(state_types=[common_pb2.RUNNING]) == {b.id}
    assert await ids(state_names=["Pending"]) == {a.id, c.id}
    assert await ids(flow_ids=[a.flow_id]) == {a.id, b.id}
    assert await ids(flow_names=[c.flow_name]) == {c.id}
    assert await ids(tags_all=["red", "big"]) == {a.id}
    assert await ids(ids=[a.id, c.id]) == {a.id, c.id}
    future = to_timestamp(orch.clock() + timedelta(hours=1))
    assert await ids(created=common_pb2.TimeRange(after=future)) == set()
    assert await ids(created=common_pb2.TimeRange(before=future)) == {a.id, b.id, c.id}


async def test_paging_in_both_sort_orders(orch):
    flow = (await orch.stub.CreateFlow(pb.CreateFlowRequest(name=unique()))).flow
    made = [(await orch.stub.CreateFlowRun(pb.CreateFlowRunRequest(flow_id=flow.id))).flow_run.id for _ in range(5)]
    for sort, expected in ((pb.CREATED_DESC, made[::-1]), (pb.CREATED_ASC, made), (pb.EXPECTED_START_TIME_ASC, made)):
        seen, token = [], ""
        while True:
            req = pb.ListFlowRunsRequest(
                filter=pb.FlowRunFilter(flow_ids=[flow.id]),
                sort=sort,
                page=common_pb2.PageRequest(page_size=2, page_token=token),
            )
            resp = await orch.stub.ListFlowRuns(req)
            seen += [r.id for r in resp.flow_runs]
            token = resp.next_page_token
            if not token:
                break
        assert seen == expected, sort


async def test_delete_flow_run(orch):
    run = await new_flow_run(orch.stub)
    await orch.stub.DeleteFlowRun(pb.DeleteFlowRunRequest(id=run.id))
    await expect_error(orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=run.id)), grpc.StatusCode.NOT_FOUND, run.id)
    await expect_error(orch.stub.DeleteFlowRun(pb.DeleteFlowRunRequest(id=run.id)), grpc.StatusCode.NOT_FOUND)
    assert await orch.count("run_states") == 0


async def test_heartbeat_records_and_reports_cancel(orch):
    run = await new_flow_run(orch.stub)
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    resp = await orch.stub.HeartbeatFlowRun(pb.HeartbeatFlowRunRequest(flow_run_id=run.id))
    assert not resp.cancel_requested
    got = (await orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=run.id))).flow_run
    assert got.heartbeat.seconds > 0
    await set_flow_state(orch.stub, run.id, common_pb2.CANCELLING)
    resp = await orch.stub.HeartbeatFlowRun(pb.HeartbeatFlowRunRequest(flow_run_id=run.id))
    assert resp.cancel_requested
    await expect_error(
        orch.stub.HeartbeatFlowRun(pb.HeartbeatFlowRunRequest(flow_run_id=uid())), grpc.StatusCode.NOT_FOUND
    )
