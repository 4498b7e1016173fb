"""A message over grpc_max_message_bytes is RESOURCE_EXHAUSTED."""

from __future__ import annotations

import grpc
import pytest

from weir.client import AsyncWeirClient
from weir.client.types import State, StateType
from weir.errors import ResourceExhausted
from weir.v1 import orchestration_pb2 as pb

from .helpers import expect_error, new_flow_run, uid


@pytest.fixture
def kit_overrides():
    return {"grpc_max_message_bytes": 4096}


async def test_oversized_request_is_resource_exhausted(orch):
    logs = [pb.LogRecord(flow_run_id=uid(), name="x", level=20, message="y" * 1000) for _ in range(10)]
    await expect_error(orch.stub.WriteLogs(pb.WriteLogsRequest(logs=logs)), grpc.StatusCode.RESOURCE_EXHAUSTED)
    small = await orch.stub.WriteLogs(pb.WriteLogsRequest(logs=logs[:1]))
    assert small.written == 1


async def test_an_oversized_proposal_fails_alone_and_the_client_goes_on(orch):
    run = await new_flow_run(orch.stub)
    async with AsyncWeirClient(orch.address) as client:
        with pytest.raises(ResourceExhausted):
            await client.set_flow_run_state(run.id, State(type=StateType.RUNNING, message="m" * 10_000))
        ok = await client.set_flow_run_state(run.id, State(type=StateType.RUNNING, message="short"))
    assert ok.state is not None and ok.state.type is StateType.RUNNING and ok.state.message == "short"
