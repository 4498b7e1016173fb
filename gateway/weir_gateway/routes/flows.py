"""GET /api/flows, GET /api/flows/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from weir.client.types import Flow, FlowFilter, Page
from weir_gateway.deps import Client
from weir_gateway.errors import ERROR_RESPONSES
from weir_gateway.routes._params import PageSize, PageToken

router = APIRouter(tags=["flows"], responses=ERROR_RESPONSES)


@router.get("/flows", response_model=Page[Flow])
async def list_flows(
    client: Client,
    name: Annotated[str | None, Query(description="Part of the flow name.")] = None,
    tag: Annotated[list[str] | None, Query(description="Required tags.")] = None,
    page_size: PageSize = None,
    page_token: PageToken = None,
) -> Page[Flow]:
    flt = FlowFilter(name_like=name, tags_all=tuple(tag or ()))
    return await client.list_flows(flt, page_size=page_size, page_token=page_token)


@router.get("/flows/{flow_id}", response_model=Flow)
async def read_flow(client: Client, flow_id: str) -> Flow:
    return await client.read_flow(flow_id)
