"""Flow-run routes: list, read, state history, logs and proposing a state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from weir.client.types import (
    FlowRun,
    FlowRunFilter,
    LogFilter,
    LogRecord,
    Page,
    ProposalResult,
    State,
    StateDetails,
    StateType,
)
from weir_gateway.deps import Client
from weir_gateway.errors import ERROR_RESPONSES
from weir_gateway.routes._params import After, Before, PageSize, PageToken, time_range

router = APIRouter(tags=["flow runs"], responses=ERROR_RESPONSES)


@router.get("/flow_runs", response_model=Page[FlowRun])
async def list_flow_runs(
    client: Client,
    state: Annotated[list[StateType] | None, Query(description="State types (any of).")] = None,
    state_name: Annotated[list[str] | None, Query(description="State names (any of).")] = None,
    name: Annotated[str | None, Query(description="Part of the run name.")] = None,
    tag: Annotated[list[str] | None, Query(description="Required tags.")] = None,
    flow_id: Annotated[list[str] | None, Query()] = None,
    flow_name: Annotated[list[str] | None, Query()] = None,
    parent_task_run_id: str | None = None,
    parent_flow_run_id: str | None = None,
    deployment_id: str | None = None,
    created_after: After = None,
    created_before: Before = None,
    page_size: PageSize = None,
    page_token: PageToken = None,
) -> Page[FlowRun]:
    """Flow runs matching every given filter, newest first."""
    flt = FlowRunFilter(
        state_types=tuple(state or ()),
        state_names=tuple(state_name or ()),
        name_like=name,
        tags_all=tuple(tag or ()),
        flow_ids=tuple(flow_id or ()),
        flow_names=tuple(flow_name or ()),
        parent_task_run_id=parent_task_run_id,
        parent_flow_run_id=parent_flow_run_id,
        deployment_id=deployment_id,
        created=time_range(created_after, created_before),
    )
    return await client.list_flow_runs(flt, page_size=page_size, page_token=page_token)


@router.get("/flow_runs/{flow_run_id}", response_model=FlowRun)
async def read_flow_run(client: Client, flow_run_id: str) -> FlowRun:
    return await client.read_flow_run(flow_run_id)


@router.get("/flow_runs/{flow_run_id}/states", response_model=Page[State])
async def list_flow_run_states(
    client: Client, flow_run_id: str, page_size: PageSize = None, page_token: PageToken = None
) -> Page[State]:
    """The run's state history, oldest first."""
    return await client.list_states(
        flow_run_id=flow_run_id, page_size=page_size, page_token=page_token
    )


@router.get("/flow_runs/{flow_run_id}/logs", response_model=Page[LogRecord])
async def list_flow_run_logs(
    client: Client,
    flow_run_id: str,
    level_ge: Annotated[int, Query(ge=0, description="Lowest Python logging level.")] = 0,
    page_size: PageSize = None,
    page_token: PageToken = None,
) -> Page[LogRecord]:
    flt = LogFilter(flow_run_id=flow_run_id, level_ge=level_ge)
    return await client.list_logs(flt, page_size=page_size, page_token=page_token)


class StateProposalBody(BaseModel):
    """A state to propose; the orchestration policy decides unless ``force``."""

    type: StateType
    name: str | None = None
    message: str | None = None
    data: Any = None
    scheduled_time: AwareDatetime | None = None
    force: bool = False
    idempotency_key: str | None = Field(default=None, description="A resend with the same key gets the first answer.")


@router.post("/flow_runs/{flow_run_id}/set_state", response_model=ProposalResult)
async def set_flow_run_state(
    client: Client, flow_run_id: str, body: StateProposalBody
) -> ProposalResult:
    """Propose a state; the answer says ACCEPT, REJECT, WAIT or ABORT."""
    state = State(
        type=body.type,
        name=body.name,
        message=body.message,
        data=body.data,
        details=StateDetails(scheduled_time=body.scheduled_time),
    )
    return await client.set_flow_run_state(
        flow_run_id, state, force=body.force, idempotency_key=body.idempotency_key
    )
