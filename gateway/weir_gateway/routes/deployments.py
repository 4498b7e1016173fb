"""Deployment routes: list, read (by id or by name), upsert, delete, pause,
resume, create a run, and dry-run job variables."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, Field

from weir.client.types import CollisionStrategy, Deployment, JobVariablesCheck, Page, Schedule
from weir_gateway.deps import Client
from weir_gateway.errors import ERROR_RESPONSES
from weir_gateway.routes._params import PageSize, PageToken

router = APIRouter(tags=["deployments"], responses=ERROR_RESPONSES)


@router.get("/deployments", response_model=Page[Deployment])
async def list_deployments(
    client: Client,
    name: Annotated[str | None, Query(description="Part of the deployment name.")] = None,
    flow_name: str | None = None,
    work_pool_name: str | None = None,
    tag: Annotated[list[str] | None, Query(description="Required tags.")] = None,
    page_size: PageSize = None,
    page_token: PageToken = None,
) -> Page[Deployment]:
    return await client.list_deployments(
        name_like=name,
        flow_name=flow_name,
        work_pool_name=work_pool_name,
        tags_all=tuple(tag or ()),
        page_size=page_size,
        page_token=page_token,
    )


@router.get("/deployments/name/{flow_name}/{name}", response_model=Deployment)
async def read_deployment_by_name(client: Client, flow_name: str, name: str) -> Deployment:
    return await client.read_deployment(name=f"{flow_name}/{name}")


class DeploymentBody(BaseModel):
    """Everything of a deployment but its names (they are in the path)."""

    entrypoint: str | None = None
    working_directory: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameter_schema: dict[str, Any] = Field(default_factory=dict)
    job_variables: dict[str, Any] = Field(default_factory=dict)
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    schedules: list[Schedule] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    version: str | None = None
    description: str | None = None
    paused: bool = False
    concurrency_limit: int = Field(default=0, ge=0, description="0: unlimited.")
    collision_strategy: CollisionStrategy = CollisionStrategy.ENQUEUE
    retries: int = Field(default=0, ge=0)
    retry_delay_seconds: list[float] = Field(default_factory=list)


@router.put("/deployments/name/{flow_name}/{name}", response_model=Deployment)
async def upsert_deployment(client: Client, flow_name: str, name: str, body: DeploymentBody) -> Deployment:
    """Create the deployment ``flow_name/name`` or replace it with the body."""
    return await client.upsert_deployment(flow_name=flow_name, name=name, **dict(body))


@router.get("/deployments/{deployment_id}", response_model=Deployment)
async def read_deployment(client: Client, deployment_id: str) -> Deployment:
    return await client.read_deployment(deployment_id)


@router.delete("/deployments/{deployment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_deployment(client: Client, deployment_id: str) -> None:
    await client.delete_deployment(deployment_id)


@router.post("/deployments/{deployment_id}/pause", response_model=Deployment)
async def pause_deployment(client: Client, deployment_id: str) -> Deployment:
    return await client.pause_deployment(deployment_id)


@router.post("/deployments/{deployment_id}/resume", response_model=Deployment)
async def resume_deployment(client: Client, deployment_id: str) -> Deployment:
    return await client.resume_deployment(deployment_id)


class RunBody(BaseModel):
    """Overrides for one run of a deployment; all optional."""

    parameters: dict[str, Any] | None = None
    tags: list[str] = Field(default_factory=list)
    scheduled_time: AwareDatetime | None = Field(default=None, description="Start time (default: now).")
    idempotency_key: str | None = Field(default=None, description="A resend with the same key returns the first run.")
    job_variables: dict[str, Any] | None = None
    name: str | None = Field(default=None, description="Run name (generated when omitted).")
    work_queue_name: str | None = None


class CreatedRun(BaseModel):
    flow_run_id: str


@router.post("/deployments/{deployment_id}/runs", response_model=CreatedRun, status_code=status.HTTP_201_CREATED)
async def create_flow_run(client: Client, deployment_id: str, body: RunBody | None = None) -> CreatedRun:
    """Create a run of the deployment; read it at ``/api/flow_runs/{flow_run_id}``."""
    flow_run_id = await client.create_flow_run_from_deployment(deployment_id, **dict(body or RunBody()))
    return CreatedRun(flow_run_id=flow_run_id)


class ValidateBody(BaseModel):
    """A stored deployment (``deployment_id``) or a draft (``deployment``), plus run-level job variables."""

    deployment_id: str | None = None
    job_variables: dict[str, Any] | None = None
    deployment: Deployment | None = None


@router.post("/deployments/validate_job_variables", response_model=JobVariablesCheck)
async def validate_job_variables(client: Client, body: ValidateBody) -> JobVariablesCheck:
    """Dry-run the job-variable layers pool -> deployment -> run; nothing is written."""
    return await client.validate_job_variables(**dict(body))
