"""GET /api/task_runs, GET /api/task_runs/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from weir.client.types import Page, StateType, TaskRun, TaskRunFilter
from weir_gateway.deps import Client
from weir_gateway.errors import ERROR_RESPONSES
from weir_gateway.routes._params import After, Before, PageSize, PageToken, time_range

router = APIRouter(tags=["task runs"], responses=ERROR_RESPONSES)


@router.get("/task_runs", response_model=Page[TaskRun])
async def list_task_runs(
    client: Client,
    flow_run_id: Annotated[list[str] | None, Query(description="Flow runs (any of).")] = None,
    state: Annotated[list[StateType] | None, Query(description="State types (any of).")] = None,
    state_name: Annotated[list[str] | None, Query()] = None,
    name: Annotated[str | None, Query(description="Part of the task-run name.")] = None,
    tag: Annotated[list[str] | None, Query(description="Required tags.")] = None,
    created_after: After = None,
    created_before: Before = None,
    page_size: PageSize = None,
    page_token: PageToken = None,
) -> Page[TaskRun]:
    flt = TaskRunFilter(
        flow_run_ids=tuple(flow_run_id or ()),
        state_types=tuple(state or ()),
        state_names=tuple(state_name or ()),
        name_like=name,
        tags_all=tuple(tag or ()),
        created=time_range(created_after, created_before),
    )
    return await client.list_task_runs(flt, page_size=page_size, page_token=page_token)


@router.get("/task_runs/{task_run_id}", response_model=TaskRun)
async def read_task_run(client: Client, task_run_id: str) -> TaskRun:
    return await client.read_task_run(task_run_id)
