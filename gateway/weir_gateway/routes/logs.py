"""GET /api/logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from weir.client.types import LogFilter, LogRecord, Page
from weir_gateway.deps import Client
from weir_gateway.errors import ERROR_RESPONSES
from weir_gateway.routes._params import After, Before, PageSize, PageToken, time_range

router = APIRouter(tags=["logs"], responses=ERROR_RESPONSES)


@router.get("/logs", response_model=Page[LogRecord])
async def list_logs(
    client: Client,
    flow_run_id: str | None = None,
    task_run_id: str | None = None,
    level_ge: Annotated[int, Query(ge=0, description="Lowest Python logging level.")] = 0,
    text: Annotated[str | None, Query(description="Part of the message.")] = None,
    after: After = None,
    before: Before = None,
    page_size: PageSize = None,
    page_token: PageToken = None,
) -> Page[LogRecord]:
    """Log records, oldest first."""
    flt = LogFilter(
        flow_run_id=flow_run_id,
        task_run_id=task_run_id,
        level_ge=level_ge,
        text_like=text,
        timestamp=time_range(after, before),
    )
    return await client.list_logs(flt, page_size=page_size, page_token=page_token)
