"""Work pools, their queues (``/work_pools/{pool}/queues``) and their workers.

Pools and queues are keyed by name, so PUT on a name creates or replaces.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from weir.client.types import Page, Worker, WorkPool, WorkQueue
from weir_gateway.deps import Client
from weir_gateway.errors import ERROR_RESPONSES
from weir_gateway.routes._params import PageSize, PageToken

router = APIRouter(tags=["work pools"], responses=ERROR_RESPONSES)


@router.get("/work_pools", response_model=Page[WorkPool])
async def list_work_pools(client: Client, page_size: PageSize = None, page_token: PageToken = None) -> Page[WorkPool]:
    return await client.list_work_pools(page_size=page_size, page_token=page_token)


@router.get("/work_pools/{name}", response_model=WorkPool)
async def read_work_pool(client: Client, name: str) -> WorkPool:
    return await client.read_work_pool(name)


class WorkPoolBody(BaseModel):
    type: str = "process"
    base_job_template: dict[str, Any] = Field(default_factory=dict)
    paused: bool = False
    concurrency_limit: int = Field(default=0, ge=0, description="0: unlimited.")
    description: str | None = None


@router.put("/work_pools/{name}", response_model=WorkPool)
async def upsert_work_pool(client: Client, name: str, body: WorkPoolBody) -> WorkPool:
    """Create the pool (with its ``default`` queue) or replace its settings."""
    return await client.upsert_work_pool(name, **dict(body))


@router.delete("/work_pools/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_work_pool(client: Client, name: str) -> None:
    await client.delete_work_pool(name)


@router.post("/work_pools/{name}/pause", response_model=WorkPool)
async def pause_work_pool(client: Client, name: str) -> WorkPool:
    return await client.pause_work_pool(name)


@router.post("/work_pools/{name}/resume", response_model=WorkPool)
async def resume_work_pool(client: Client, name: str) -> WorkPool:
    return await client.resume_work_pool(name)


# ----------------------------------------------------------------- queues


@router.get("/work_pools/{pool}/queues", response_model=Page[WorkQueue])
async def list_work_queues(
    client: Client, pool: str, page_size: PageSize = None, page_token: PageToken = None
) -> Page[WorkQueue]:
    return await client.list_work_queues(pool, page_size=page_size, page_token=page_token)


@router.get("/work_pools/{pool}/queues/{name}", response_model=WorkQueue)
async def read_work_queue(client: Client, pool: str, name: str) -> WorkQueue:
    return await client.read_work_queue(pool, name)


class WorkQueueBody(BaseModel):
    priority: int = Field(default=1, description="Lower numbers are served first.")
    concurrency_limit: int = Field(default=0, ge=0, description="0: unlimited.")
    paused: bool = False
    description: str | None = None


@router.put("/work_pools/{pool}/queues/{name}", response_model=WorkQueue)
async def upsert_work_queue(client: Client, pool: str, name: str, body: WorkQueueBody) -> WorkQueue:
    """Create the queue or replace its settings."""
    return await client.upsert_work_queue(pool, name, **dict(body))


@router.delete("/work_pools/{pool}/queues/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_work_queue(client: Client, pool: str, name: str) -> None:
    await client.delete_work_queue(pool, name)


@router.post("/work_pools/{pool}/queues/{name}/pause", response_model=WorkQueue)
async def pause_work_queue(client: Client, pool: str, name: str) -> WorkQueue:
    return await client.pause_work_queue(pool, name)


@router.post("/work_pools/{pool}/queues/{name}/resume", response_model=WorkQueue)
async def resume_work_queue(client: Client, pool: str, name: str) -> WorkQueue:
    return await client.resume_work_queue(pool, name)


# ---------------------------------------------------------------- workers


@router.get("/workers", response_model=Page[Worker])
async def list_workers(
    client: Client, work_pool_name: str | None = None, page_size: PageSize = None, page_token: PageToken = None
) -> Page[Worker]:
    """Workers the server knows, of one pool (``work_pool_name``) or of all."""
    return await client.list_workers(work_pool_name, page_size=page_size, page_token=page_token)


@router.get("/work_pools/{pool}/workers", response_model=Page[Worker])
async def list_pool_workers(
    client: Client, pool: str, page_size: PageSize = None, page_token: PageToken = None
) -> Page[Worker]:
    return await client.list_workers(pool, page_size=page_size, page_token=page_token)
