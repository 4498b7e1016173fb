"""GET /api/run_history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from weir.client.types import FlowRunFilter, HistoryBucket, StateType
from weir_gateway.deps import Client
from weir_gateway.errors import ERROR_RESPONSES

router = APIRouter(tags=["run history"], responses=ERROR_RESPONSES)


@router.get("/run_history", response_model=list[HistoryBucket])
async def run_history(
    client: Client,
    start: AwareDatetime,
    end: AwareDatetime,
    interval_seconds: Annotated[float, Query(ge=1)],
    state: Annotated[list[StateType] | None, Query()] = None,
    flow_name: Annotated[list[str] | None, Query()] = None,
    tag: Annotated[list[str] | None, Query()] = None,
    deployment_id: str | None = None,
) -> list[HistoryBucket]:
    """Flow-run counts per state in buckets of ``interval_seconds`` over [start, end)."""
    flt = FlowRunFilter(
        state_types=tuple(state or ()),
        flow_names=tuple(flow_name or ()),
        tags_all=tuple(tag or ()),
        deployment_id=deployment_id,
    )
    return await client.run_history(
        start=start, end=end, interval_seconds=interval_seconds, filter=flt
    )
