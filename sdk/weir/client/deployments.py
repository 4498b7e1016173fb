"""Client methods of ``DeploymentService``: deployments, work pools, work
queues and workers.

Mixed into :class:`weir.client.AsyncWeirClient`::

    async with await get_client() as client:
        await client.upsert_work_pool("local")
        deployment = await client.upsert_deployment(
            flow_name="etl", name="nightly", entrypoint="flows/etl.py:etl",
            work_pool_name="local", schedules=[Schedule.from_cron("0 3 * * *")],
        )
        run_id = await client.create_flow_run_from_deployment(deployment.id, parameters={"day": "mon"})

Names are the keys: a deployment is unique per ``(flow_name, name)``, a pool
by name, a queue by ``(pool, name)``. Upserts create or replace, so sending
the same one twice is harmless (and they are retried like reads).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

from weir._proto import dict_to_struct, to_timestamp
from weir.client._convert import deployments as dp
from weir.client._convert._common import page_request
from weir.client._grpc import Transport
from weir.client._paging import follow_pages
from weir.client.types import (
    CollisionStrategy,
    Deployment,
    JobVariablesCheck,
    Page,
    Schedule,
    Worker,
    WorkPool,
    WorkQueue,
)
from weir.errors import InvalidArgument
from weir.v1 import deployments_pb2 as pb
from weir.v1 import deployments_pb2_grpc


class DeploymentsAPI:
    """Deployments, work pools, work queues and workers."""

    _transport: Transport
    _deployments_cache: tuple[object, Any] | None = None

    @property
    def _deployments_stub(self) -> Any:
        channel = self._transport.channel_for("deployments")
        if self._deployments_cache is None or self._deployments_cache[0] is not channel:
            self._deployments_cache = (channel, deployments_pb2_grpc.DeploymentServiceStub(channel))
        return self._deployments_cache[1]

    async def _dp_call(self, method: str, request: Any, *, idempotent: bool = False) -> Any:
        stub = self._deployments_stub
        return await self._transport.unary(getattr(stub, method), request, idempotent=idempotent)

    # ------------------------------------------------------- deployments

    async def upsert_deployment(
        self,
        *,
        flow_name: str,
        name: str,
        entrypoint: str | None = None,
        working_directory: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        parameter_schema: Mapping[str, Any] | None = None,
        job_variables: Mapping[str, Any] | None = None,
        work_pool_name: str | None = None,
        work_queue_name: str | None = None,
        schedules: Iterable[Schedule] = (),
        tags: Iterable[str] = (),
        version: str | None = None,
        description: str | None = None,
        paused: bool = False,
        concurrency_limit: int = 0,
        collision_strategy: CollisionStrategy = CollisionStrategy.ENQUEUE,
        retries: int = 0,
        retry_delay_seconds: Iterable[float] = (),
    ) -> Deployment:
        """Create the deployment ``flow_name/name``, or replace it with these values.

        ``concurrency_limit`` 0 means unlimited. Invalid schedules, job
        variables or names raise ``InvalidArgument`` naming the field (e.g.
        ``deployment.schedules[0].cron``).
        """
        deployment = Deployment(
            flow_name=flow_name,
            name=name,
            entrypoint=entrypoint,
            working_directory=working_directory,
            parameters=dict(parameters or {}),
            parameter_schema=dict(parameter_schema or {}),
            job_variables=dict(job_variables or {}),
            work_pool_name=work_pool_name,
            work_queue_name=work_queue_name,
            schedules=tuple(schedules),
            tags=tuple(tags),
            version=version,
            description=description,
            paused=paused,
            concurrency_limit=concurrency_limit,
            collision_strategy=CollisionStrategy(collision_strategy),
            retries=retries,
            retry_delay_seconds=tuple(retry_delay_seconds),
        )
        req = pb.UpsertDeploymentRequest(deployment=dp.deployment_to_proto(deployment))
        # Create-or-replace by name: a resend writes the same row again.
        resp = await self._dp_call("UpsertDeployment", req, idempotent=True)
        return dp.deployment_from_proto(resp.deployment)

    async def read_deployment(self, deployment_id: str | None = None, *, name: str | None = None) -> Deployment:
        """Read a deployment by id or by full name ``"flow/deployment"`` (give one)."""
        if not deployment_id and not name:
            raise InvalidArgument("give a deployment id or a name 'flow/deployment'", field="name")
        req = pb.GetDeploymentRequest(id=deployment_id or "", full_name=name or "")
        resp = await self._dp_call("GetDeployment", req, idempotent=True)
        return dp.deployment_from_proto(resp.deployment)

    async def list_deployments(
        self,
        *,
        name_like: str | None = None,
        flow_name: str | None = None,
        work_pool_name: str | None = None,
        tags_all: Iterable[str] = (),
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[Deployment]:
        """One page of deployments matching every given filter."""
        req = pb.ListDeploymentsRequest(
            name_like=name_like or "",
            flow_name=flow_name or "",
            work_pool_name=work_pool_name or "",
            tags_all=list(tags_all),
            page=page_request(page_size, page_token),
        )
        resp = await self._dp_call("ListDeployments", req, idempotent=True)
        return Page[Deployment](
            items=[dp.deployment_from_proto(m) for m in resp.deployments],
            next_page_token=resp.next_page_token or None,
        )

    def iter_deployments(
        self,
        *,
        name_like: str | None = None,
        flow_name: str | None = None,
        work_pool_name: str | None = None,
        tags_all: Iterable[str] = (),
        page_size: int | None = None,
    ) -> AsyncIterator[Deployment]:
        tags = tuple(tags_all)
        return follow_pages(
            lambda t: self.list_deployments(
                name_like=name_like,
                flow_name=flow_name,
                work_pool_name=work_pool_name,
                tags_all=tags,
                page_size=page_size,
                page_token=t,
            )
        )

    async def delete_deployment(self, deployment_id: str) -> None:
        """Delete a deployment (its flow runs stay)."""
        await self._dp_call("DeleteDeployment", pb.DeleteDeploymentRequest(id=deployment_id))

    async def pause_deployment(self, deployment_id: str) -> Deployment:
        """Stop scheduling runs of the deployment; new manual runs are refused."""
        return await self._set_deployment_paused(deployment_id, True)

    async def resume_deployment(self, deployment_id: str) -> Deployment:
        return await self._set_deployment_paused(deployment_id, False)

    async def _set_deployment_paused(self, deployment_id: str, paused: bool) -> Deployment:
        req = pb.SetDeploymentPausedRequest(id=deployment_id, paused=paused)
        resp = await self._dp_call("SetDeploymentPaused", req, idempotent=True)
        return dp.deployment_from_proto(resp.deployment)

    async def create_flow_run_from_deployment(
        self,
        deployment_id: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        scheduled_time: datetime | None = None,
        idempotency_key: str | None = None,
        job_variables: Mapping[str, Any] | None = None,
        name: str | None = None,
        work_queue_name: str | None = None,
        parent_task_run_id: str | None = None,
    ) -> str:
        """Create a SCHEDULED run of a deployment (now, or at ``scheduled_time``)
        and return its flow-run id.

        ``parameters`` and ``job_variables`` are layered over the deployment's.
        A paused deployment or pool raises ``FailedPrecondition``; parameters
        or job variables that break the schemas raise ``InvalidArgument``
        naming the field. With ``idempotency_key`` a resend returns the first
        run (and the call is retried like a read). ``parent_task_run_id`` makes
        the run a child of that task run's flow run, as a subflow is.
        """
        req = pb.CreateFlowRunFromDeploymentRequest(
            deployment_id=deployment_id,
            tags=list(tags),
            idempotency_key=idempotency_key or "",
            name=name or "",
            work_queue_name=work_queue_name or "",
            parent_task_run_id=parent_task_run_id or "",
        )
        if parameters is not None:
            req.parameters.CopyFrom(dict_to_struct(parameters))
        if job_variables is not None:
            req.job_variables.CopyFrom(dict_to_struct(job_variables))
        if scheduled_time is not None:
            req.scheduled_time.CopyFrom(to_timestamp(scheduled_time))
        resp = await self._dp_call("CreateFlowRunFromDeployment", req, idempotent=bool(idempotency_key))
        return str(resp.flow_run_id)

    async def validate_job_variables(
        self,
        *,
        deployment_id: str | None = None,
        job_variables: Mapping[str, Any] | None = None,
        deployment: Deployment | None = None,
    ) -> JobVariablesCheck:
        """Dry-run the job-variable layers pool -> deployment -> ``job_variables``.

        Check a stored deployment (``deployment_id``) or a draft
        (``deployment``, naming its work pool); nothing is written.
        """
        req = pb.ValidateJobVariablesRequest(
            deployment_id=deployment_id or "", job_variables=dict_to_struct(job_variables)
        )
        if deployment is not None:
            req.deployment.CopyFrom(dp.deployment_to_proto(deployment))
        resp = await self._dp_call("ValidateJobVariables", req, idempotent=True)
        return dp.check_from_proto(resp)

    # -------------------------------------------------------- work pools

    async def upsert_work_pool(
        self,
        name: str,
        *,
        type: str = "process",
        base_job_template: Mapping[str, Any] | None = None,
        paused: bool = False,
        concurrency_limit: int = 0,
        description: str | None = None,
    ) -> WorkPool:
        """Create the work pool ``name`` (with its ``default`` queue), or replace its settings."""
        pool = WorkPool(
            name=name,
            type=type,
            base_job_template=dict(base_job_template or {}),
            paused=paused,
            concurrency_limit=concurrency_limit,
            description=description,
        )
        req = pb.UpsertWorkPoolRequest(work_pool=dp.work_pool_to_proto(pool))
        resp = await self._dp_call("UpsertWorkPool", req, idempotent=True)
        return dp.work_pool_from_proto(resp.work_pool)

    async def read_work_pool(self, name: str) -> WorkPool:
        resp = await self._dp_call("GetWorkPool", pb.GetWorkPoolRequest(name=name), idempotent=True)
        return dp.work_pool_from_proto(resp.work_pool)

    async def list_work_pools(self, *, page_size: int | None = None, page_token: str | None = None) -> Page[WorkPool]:
        req = pb.ListWorkPoolsRequest(page=page_request(page_size, page_token))
        resp = await self._dp_call("ListWorkPools", req, idempotent=True)
        return Page[WorkPool](
            items=[dp.work_pool_from_proto(m) for m in resp.work_pools],
            next_page_token=resp.next_page_token or None,
        )

    def iter_work_pools(self, *, page_size: int | None = None) -> AsyncIterator[WorkPool]:
        return follow_pages(lambda t: self.list_work_pools(page_size=page_size, page_token=t))

    async def delete_work_pool(self, name: str) -> None:
        await self._dp_call("DeleteWorkPool", pb.DeleteWorkPoolRequest(name=name))

    async def pause_work_pool(self, name: str) -> WorkPool:
        """Hand no more runs of this pool to workers until it is resumed."""
        return await self._set_pool_paused(name, True)

    async def resume_work_pool(self, name: str) -> WorkPool:
        return await self._set_pool_paused(name, False)

    async def _set_pool_paused(self, name: str, paused: bool) -> WorkPool:
        req = pb.SetWorkPoolPausedRequest(name=name, paused=paused)
        resp = await self._dp_call("SetWorkPoolPaused", req, idempotent=True)
        return dp.work_pool_from_proto(resp.work_pool)

    # ------------------------------------------------------- work queues

    async def upsert_work_queue(
        self,
        work_pool_name: str,
        name: str,
        *,
        priority: int = 1,
        concurrency_limit: int = 0,
        paused: bool = False,
        description: str | None = None,
    ) -> WorkQueue:
        """Create the queue ``name`` of a pool, or replace its settings.

        Queues with lower ``priority`` numbers are served first; 1 is the
        highest (0 on the wire means "unset" and reads as 1).
        """
        queue = WorkQueue(
            work_pool_name=work_pool_name,
            name=name,
            priority=priority,
            concurrency_limit=concurrency_limit,
            paused=paused,
            description=description,
        )
        req = pb.UpsertWorkQueueRequest(work_queue=dp.work_queue_to_proto(queue))
        resp = await self._dp_call("UpsertWorkQueue", req, idempotent=True)
        return dp.work_queue_from_proto(resp.work_queue)

    async def read_work_queue(self, work_pool_name: str, name: str) -> WorkQueue:
        req = pb.GetWorkQueueRequest(work_pool_name=work_pool_name, name=name)
        resp = await self._dp_call("GetWorkQueue", req, idempotent=True)
        return dp.work_queue_from_proto(resp.work_queue)

    async def list_work_queues(
        self, work_pool_name: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> Page[WorkQueue]:
        """One page of a pool's queues."""
        req = pb.ListWorkQueuesRequest(work_pool_name=work_pool_name, page=page_request(page_size, page_token))
        resp = await self._dp_call("ListWorkQueues", req, idempotent=True)
        return Page[WorkQueue](
            items=[dp.work_queue_from_proto(m) for m in resp.work_queues],
            next_page_token=resp.next_page_token or None,
        )

    def iter_work_queues(self, work_pool_name: str, *, page_size: int | None = None) -> AsyncIterator[WorkQueue]:
        return follow_pages(lambda t: self.list_work_queues(work_pool_name, page_size=page_size, page_token=t))

    async def delete_work_queue(self, work_pool_name: str, name: str) -> None:
        req = pb.DeleteWorkQueueRequest(work_pool_name=work_pool_name, name=name)
        await self._dp_call("DeleteWorkQueue", req)

    async def pause_work_queue(self, work_pool_name: str, name: str) -> WorkQueue:
        return await self._set_queue_paused(work_pool_name, name, True)

    async def resume_work_queue(self, work_pool_name: str, name: str) -> WorkQueue:
        return await self._set_queue_paused(work_pool_name, name, False)

    async def _set_queue_paused(self, work_pool_name: str, name: str, paused: bool) -> WorkQueue:
        req = pb.SetWorkQueuePausedRequest(work_pool_name=work_pool_name, name=name, paused=paused)
        resp = await self._dp_call("SetWorkQueuePaused", req, idempotent=True)
        return dp.work_queue_from_proto(resp.work_queue)

    # ----------------------------------------------------------- workers

    async def list_workers(
        self,
        work_pool_name: str | None = None,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[Worker]:
        """Workers the server knows, of one pool or of all."""
        req = pb.ListWorkersRequest(work_pool_name=work_pool_name or "", page=page_request(page_size, page_token))
        resp = await self._dp_call("ListWorkers", req, idempotent=True)
        return Page[Worker](
            items=[dp.worker_from_proto(m) for m in resp.workers],
            next_page_token=resp.next_page_token or None,
        )

    def iter_workers(self, work_pool_name: str | None = None, *, page_size: int | None = None) -> AsyncIterator[Worker]:
        return follow_pages(lambda t: self.list_workers(work_pool_name, page_size=page_size, page_token=t))
