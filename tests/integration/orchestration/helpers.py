"""Small builders for orchestration tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import grpc
import pytest

from weir._proto import to_timestamp
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb


def uid() -> str:
    return str(uuid.uuid4())


def unique(prefix: str = "flow") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def state(
    state_type: int, *, name: str = "", state_id: str = "", when: datetime | None = None, **details: Any
) -> common_pb2.State:
    for key in ("scheduled_time", "cache_expiration"):
        if isinstance(details.get(key), datetime):
            details[key] = to_timestamp(details[key])
    return common_pb2.State(
        id=state_id,
        type=state_type,  # type: ignore[arg-type]
        name=name,
        timestamp=to_timestamp(when),
        details=common_pb2.StateDetails(**details),
    )


def proposal(state_type: int, **kwargs: Any) -> pb.StateProposal:
    extra = {
        k: kwargs.pop(k) for k in ("force", "idempotency_key", "expected_state_id", "fencing_token") if k in kwargs
    }
    return pb.StateProposal(state=state(state_type, **kwargs), **extra)


async def new_flow_run(stub: Any, **kwargs: Any) -> pb.FlowRun:
    kwargs.setdefault("flow_name", unique())
    return (await stub.CreateFlowRun(pb.CreateFlowRunRequest(**kwargs))).flow_run


async def set_flow_state(stub: Any, run_id: str, state_type: int, **kwargs: Any) -> pb.ProposalResult:
    req = pb.SetFlowRunStateRequest(flow_run_id=run_id, proposal=proposal(state_type, **kwargs))
    return (await stub.SetFlowRunState(req)).result


async def set_task_state(stub: Any, run_id: str, state_type: int, **kwargs: Any) -> pb.ProposalResult:
    req = pb.SetTaskRunStateRequest(task_run_id=run_id, proposal=proposal(state_type, **kwargs))
    return (await stub.SetTaskRunState(req)).result


async def new_task_run(stub: Any, flow_run_id: str, **kwargs: Any) -> pb.TaskRun:
    kwargs.setdefault("task_key", unique("task"))
    req = pb.CreateTaskRunRequest(flow_run_id=flow_run_id, **kwargs)
    return (await stub.CreateTaskRun(req)).task_run


async def expect_error(call: Any, code: grpc.StatusCode, *words: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == code, f"{err.code()}: {err.details()}"
    for word in words:
        assert word in (err.details() or ""), f"{word!r} not in {err.details()!r}"
    return err
