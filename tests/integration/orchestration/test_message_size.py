"""A message over grpc_max_message_bytes is RESOURCE_EXHAUSTED."""

from __future__ import annotations

import grpc
import pytest

from weir.v1 import orchestration_pb2 as pb

from .helpers import expect_error, uid


@pytest.fixture
def kit_overrides():
    return {"grpc_max_message_bytes": 4096}


async def test_oversized_request_is_resource_exhausted(orch):
    logs = [pb.LogRecord(flow_run_id=uid(), name="x", level=20, message="y" * 1000) for _ in range(10)]
    await expect_error(orch.stub.WriteLogs(pb.WriteLogsRequest(logs=logs)), grpc.StatusCode.RESOURCE_EXHAUSTED)
    small = await orch.stub.WriteLogs(pb.WriteLogsRequest(logs=logs[:1]))
    assert small.written == 1
