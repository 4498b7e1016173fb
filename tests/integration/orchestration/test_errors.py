"""Bad input answers INVALID_ARGUMENT naming the field (never INTERNAL/UNKNOWN)."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from weir._proto import to_timestamp
from weir.errors import FIELD_METADATA_KEY
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb

from .helpers import expect_error, new_flow_run, uid

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def field_of(err: grpc.aio.AioRpcError) -> str:
    return dict(err.trailing_metadata() or ()).get(FIELD_METADATA_KEY, "")


async def test_unknown_ids_are_not_found(orch):
    missing = uid()
    for call in (
        orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=missing)),
        orch.stub.GetTaskRun(pb.GetTaskRunRequest(id=missing)),
        orch.stub.DeleteFlow(pb.DeleteFlowRequest(id=missing)),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND, missing)


async def test_malformed_uuid_names_the_field(orch):
    err = await expect_error(orch.stub.GetFlowRun(pb.GetFlowRunRequest(id="not-a-uuid")), INVALID, "id")
    assert await field_of(err) == "id"
    err = await expect_error(
        orch.stub.ListFlowRuns(pb.ListFlowRunsRequest(filter=pb.FlowRunFilter(flow_ids=["zz"]))), INVALID, "flow_ids"
    )
    assert await field_of(err) == "filter.flow_ids[0]"


async def test_time_range_after_before_is_invalid(orch):
    now = orch.clock()
    bad = common_pb2.TimeRange(after=to_timestamp(now), before=to_timestamp(now - timedelta(hours=1)))
    err = await expect_error(
        orch.stub.ListFlowRuns(pb.ListFlowRunsRequest(filter=pb.FlowRunFilter(created=bad))), INVALID, "filter.created"
    )
    assert await field_of(err) == "filter.created"
    await expect_error(
        orch.stub.ListTaskRuns(pb.ListTaskRunsRequest(filter=pb.TaskRunFilter(start_time=bad))),
        INVALID,
        "filter.start_time",
    )


@pytest.mark.parametrize("token", ["garbage!!", "WyJ4Il0", "WyJub3QtYS1kYXRlIiwiaWQiXQ"])
async def test_bad_page_token(orch, token):
    err = await expect_error(
        orch.stub.ListFlows(pb.ListFlowsRequest(page=common_pb2.PageRequest(page_token=token))), INVALID, "page_token"
    )
    assert await field_of(err) == "page.page_token"


async def test_invalid_state_type_value(orch):
    run = await new_flow_run(orch.stub)
    bad = pb.StateProposal(state=common_pb2.State(type=42))  # type: ignore[arg-type]
    err = await expect_error(
        orch.stub.SetFlowRunState(pb.SetFlowRunStateRequest(flow_run_id=run.id, proposal=bad)), INVALID, "type"
    )
    assert await field_of(err) == "proposal.state.type"
    unset = pb.StateProposal(state=common_pb2.State())
    await expect_error(
        orch.stub.SetFlowRunState(pb.SetFlowRunStateRequest(flow_run_id=run.id, proposal=unset)), INVALID
    )
    err = await expect_error(
        orch.stub.ListFlowRuns(pb.ListFlowRunsRequest(filter=pb.FlowRunFilter(state_types=[42]))),  # type: ignore[list-item]
        INVALID,
        "state_types",
    )
    assert await field_of(err) == "filter.state_types[0]"


async def test_run_history_interval_must_be_at_least_a_second(orch):
    now = orch.clock()
    req = pb.RunHistoryRequest(
        start=to_timestamp(now - timedelta(hours=1)), end=to_timestamp(now), interval_seconds=0.5
    )
    err = await expect_error(orch.stub.RunHistory(req), INVALID, "interval_seconds")
    assert await field_of(err) == "interval_seconds"
    too_many = pb.RunHistoryRequest(
        start=to_timestamp(now - timedelta(days=365)), end=to_timestamp(now), interval_seconds=1
    )
    await expect_error(orch.stub.RunHistory(too_many), INVALID, "interval_seconds")
    backwards = pb.RunHistoryRequest(start=to_timestamp(now), end=to_timestamp(now - timedelta(1)), interval_seconds=60)
    await expect_error(orch.stub.RunHistory(backwards), INVALID, "end")


async def test_negative_retries_rejected(orch):
    await expect_error(
        orch.stub.CreateFlowRun(pb.CreateFlowRunRequest(flow_name="x", policy=pb.RunPolicy(retries=-1))),
        INVALID,
        "policy.retries",
    )


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.CreateFlowRunRequest(flow_name="f", name="n" * 256), "name"),
        (pb.CreateFlowRunRequest(flow_name="f", name="a\x00b"), "name"),
        (pb.CreateFlowRunRequest(flow_name="f", idempotency_key="k" * 256), "idempotency_key"),
        (
            pb.CreateFlowRunRequest(flow_name="f", state=common_pb2.State(type=common_pb2.PENDING, name="s" * 65)),
            "state.name",
        ),
    ],
)
async def test_names_and_keys_longer_than_their_column_or_holding_nul_are_refused(orch, request_, field):
    # Postgres refused these rows (INTERNAL) and SQLite stored them: now both answer INVALID_ARGUMENT.
    err = await expect_error(orch.stub.CreateFlowRun(request_), INVALID, field)
    assert await field_of(err) == field
    listed = await orch.stub.ListFlowRuns(pb.ListFlowRunsRequest(filter=pb.FlowRunFilter(flow_names=["f"])))
    assert not listed.flow_runs  # nothing was written
