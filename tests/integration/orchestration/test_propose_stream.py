"""ProposeStates: proposals over one open stream, answered by tag, with the unary calls' decisions."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from weir.client import AsyncWeirClient
from weir.client.types import State, StateType
from weir.errors import InvalidArgument, NotFound
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb

from .helpers import new_flow_run, new_task_run, proposal, uid


def flow(tag: int, run_id: str, state_type: int, **kwargs) -> pb.ProposeStatesRequest:
    req = pb.SetFlowRunStateRequest(flow_run_id=run_id, proposal=proposal(state_type, **kwargs))
    return pb.ProposeStatesRequest(tag=tag, flow_run=req)


async def answers(call, n: int) -> dict[int, pb.ProposeStatesResponse]:
    out = {}
    for _ in range(n):
        answer = await call.read()
        assert answer is not grpc.aio.EOF
        out[answer.tag] = answer
    return out


async def history_types(orch, run_id: str) -> list[int]:
    got = await orch.stub.ListStates(pb.ListStatesRequest(flow_run_id=run_id))
    return [s.type for s in got.states]


async def test_one_runs_proposals_are_decided_in_the_order_sent(orch):
    run = await new_flow_run(orch.stub)
    call = orch.stub.ProposeStates()
    # Sent back to back, none waiting for the answer before it.
    await call.write(flow(1, run.id, common_pb2.RUNNING))
    await call.write(flow(2, run.id, common_pb2.PENDING))
    await call.write(flow(3, run.id, common_pb2.COMPLETED))
    got = await answers(call, 3)
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    assert got[1].result.decision == pb.ACCEPT and got[1].result.state.type == common_pb2.RUNNING
    assert got[2].result.decision == pb.REJECT and got[2].result.reason == "run is already RUNNING"
    assert got[2].result.state.id == got[1].result.state.id
    assert got[3].result.decision == pb.ACCEPT and got[3].result.state.type == common_pb2.COMPLETED
    assert await history_types(orch, run.id) == [common_pb2.PENDING, common_pb2.RUNNING, common_pb2.COMPLETED]


async def test_a_failed_request_is_answered_with_its_status_and_the_stream_goes_on(orch):
    run = await new_flow_run(orch.stub)
    task = await new_task_run(orch.stub, run.id)
    missing = uid()
    call = orch.stub.ProposeStates()
    await call.write(flow(1, missing, common_pb2.RUNNING))
    await call.write(flow(2, "not-an-id", common_pb2.RUNNING))
    await call.write(flow(3, run.id, 99))
    await call.write(pb.ProposeStatesRequest(tag=4))
    await call.write(flow(5, run.id, common_pb2.RUNNING))
    task_req = pb.SetTaskRunStateRequest(task_run_id=task.id, proposal=proposal(common_pb2.RUNNING))
    await call.write(pb.ProposeStatesRequest(tag=6, task_run=task_req))
    got = await answers(call, 6)
    await call.done_writing()

    def error(tag: int) -> pb.CallError:
        assert got[tag].WhichOneof("outcome") == "error", got[tag]
        return got[tag].error

    assert error(1).code == grpc.StatusCode.NOT_FOUND.value[0]
    assert missing in error(1).message and error(1).field == "flow_run_id"
    assert error(2).code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and error(2).field == "flow_run_id"
    assert error(3).code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "type" in error(3).field
    assert error(4).code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and error(4).field == "request"
    assert got[5].result.decision == pb.ACCEPT and got[5].result.state.type == common_pb2.RUNNING
    assert got[6].result.decision == pb.ACCEPT and got[6].result.state.type == common_pb2.RUNNING
    assert await call.code() == grpc.StatusCode.OK


async def test_many_runs_in_flight_on_one_stream(orch):
    runs = [await new_flow_run(orch.stub) for _ in range(20)]
    call = orch.stub.ProposeStates()
    for i, run in enumerate(runs):
        await call.write(flow(i, run.id, common_pb2.RUNNING))
    for i, run in enumerate(runs):
        await call.write(flow(100 + i, run.id, common_pb2.COMPLETED))
    got = await answers(call, 40)
    await call.done_writing()
    assert all(a.result.decision == pb.ACCEPT for a in got.values())
    for i, run in enumerate(runs):
        assert got[i].result.state.type == common_pb2.RUNNING
        assert got[100 + i].result.state.type == common_pb2.COMPLETED
        assert await history_types(orch, run.id) == [common_pb2.PENDING, common_pb2.RUNNING, common_pb2.COMPLETED]


async def test_a_dropped_stream_loses_nothing_and_a_resend_duplicates_nothing(orch):
    runs = [await new_flow_run(orch.stub) for _ in range(10)]
    call = orch.stub.ProposeStates()
    for i, run in enumerate(runs):
        await call.write(flow(i, run.id, common_pb2.RUNNING, idempotency_key=f"k-{run.id}"))
    first = await call.read()  # at least one was decided; the others may or may not have been
    call.cancel()
    # A new stream resends everything with the same keys: each run goes RUNNING exactly once.
    again = orch.stub.ProposeStates()
    for i, run in enumerate(runs):
        await again.write(flow(i, run.id, common_pb2.RUNNING, idempotency_key=f"k-{run.id}"))
    got = await answers(again, 10)
    await again.done_writing()
    assert got[first.tag].result.state.id == first.result.state.id  # the first answer, replayed
    for i, run in enumerate(runs):
        assert got[i].result.decision == pb.ACCEPT, got[i]
        assert await history_types(orch, run.id) == [common_pb2.PENDING, common_pb2.RUNNING]
    # The service is still serving.
    assert (await orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=runs[0].id))).flow_run.state.type == common_pb2.RUNNING


async def test_the_client_proposes_over_the_stream_and_raises_weir_errors(orch):
    run = await new_flow_run(orch.stub)
    async with AsyncWeirClient(orch.address) as client:
        running = await client.set_flow_run_state(run.id, State(type=StateType.RUNNING))
        stream = client._proposals
        assert stream._call is not None  # it went over ProposeStates
        with pytest.raises(NotFound) as missing:
            await client.set_flow_run_state(uid(), State(type=StateType.RUNNING))
        assert missing.value.field == "flow_run_id"
        with pytest.raises(InvalidArgument):
            await client.set_flow_run_state("not-an-id", State(type=StateType.RUNNING))
        # A stream that ended while idle is replaced by the next proposal, even before its reader
        # has noticed (the write fails, and nothing went out).
        broken = stream._call
        broken.cancel()
        done = await client.set_flow_run_state(run.id, State(type=StateType.COMPLETED))
        assert stream._call is not None and stream._call is not broken
        both = await asyncio.gather(
            *(client.set_flow_run_state(run.id, State(type=StateType.PENDING)) for _ in range(3))
        )
    assert running.state is not None and running.state.type is StateType.RUNNING
    assert done.state is not None and done.state.type is StateType.COMPLETED
    assert all(r.decision.name == "REJECT" for r in both)
    assert await history_types(orch, run.id) == [common_pb2.PENDING, common_pb2.RUNNING, common_pb2.COMPLETED]
