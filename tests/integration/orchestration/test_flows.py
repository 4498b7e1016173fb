"""Flows over real gRPC: create (idempotent by name), read, list, page, delete."""

from __future__ import annotations

import grpc

from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb

from .helpers import expect_error, new_flow_run, uid, unique


async def test_create_is_idempotent_by_name(orch):
    name = unique()
    first = (await orch.stub.CreateFlow(pb.CreateFlowRequest(name=name, tags=["a"]))).flow
    again = (await orch.stub.CreateFlow(pb.CreateFlowRequest(name=name))).flow
    assert first.id == again.id and first.name == name and list(first.tags) == ["a"]
    assert await orch.count("flows") == 1
    assert await orch.count("outbox") == 1  # weir.flow.created once


async def test_get_by_id_and_by_name(orch):
    flow = (await orch.stub.CreateFlow(pb.CreateFlowRequest(name=unique()))).flow
    by_id = (await orch.stub.GetFlow(pb.GetFlowRequest(id=flow.id))).flow
    by_name = (await orch.stub.GetFlow(pb.GetFlowRequest(name=flow.name))).flow
    assert by_id == by_name == flow
    assert flow.created.seconds > 0


async def test_get_unknown_is_not_found(orch):
    missing = uid()
    await expect_error(orch.stub.GetFlow(pb.GetFlowRequest(id=missing)), grpc.StatusCode.NOT_FOUND, "flow", missing)
    await expect_error(orch.stub.GetFlow(pb.GetFlowRequest(id="nope")), grpc.StatusCode.INVALID_ARGUMENT, "id")


async def test_list_filters(orch):
    prefix = unique("etl")
    for i in range(3):
        await orch.stub.CreateFlow(pb.CreateFlowRequest(name=f"{prefix}-{i}", tags=["nightly"] if i else []))
    await orch.stub.CreateFlow(pb.CreateFlowRequest(name=unique("other")))
    like = (await orch.stub.ListFlows(pb.ListFlowsRequest(filter=pb.FlowFilter(name_like=prefix.upper())))).flows
    assert sorted(f.name for f in like) == [f"{prefix}-{i}" for i in range(3)]
    tagged = (await orch.stub.ListFlows(pb.ListFlowsRequest(filter=pb.FlowFilter(tags_all=["nightly"])))).flows
    assert sorted(f.name for f in tagged) == [f"{prefix}-1", f"{prefix}-2"]
    named = (await orch.stub.ListFlows(pb.ListFlowsRequest(filter=pb.FlowFilter(names=[f"{prefix}-0"])))).flows
    assert [f.name for f in named] == [f"{prefix}-0"]


async def test_paging_visits_every_flow_once_newest_first(orch):
    names = [unique() for _ in range(7)]
    for name in names:
        await orch.stub.CreateFlow(pb.CreateFlowRequest(name=name))
    seen, token = [], ""
    while True:
        resp = await orch.stub.ListFlows(
            pb.ListFlowsRequest(page=common_pb2.PageRequest(page_size=3, page_token=token))
        )
        seen += [f.name for f in resp.flows]
        token = resp.next_page_token
        if not token:
            break
    assert seen == list(reversed(names))


async def test_delete_removes_flow_and_its_runs(orch):
    run = await new_flow_run(orch.stub)
    await orch.stub.DeleteFlow(pb.DeleteFlowRequest(id=run.flow_id))
    await expect_error(orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=run.id)), grpc.StatusCode.NOT_FOUND)
    await expect_error(orch.stub.GetFlow(pb.GetFlowRequest(id=run.flow_id)), grpc.StatusCode.NOT_FOUND)
    assert await orch.count("run_states") == 0
    await expect_error(orch.stub.DeleteFlow(pb.DeleteFlowRequest(id=run.flow_id)), grpc.StatusCode.NOT_FOUND)
