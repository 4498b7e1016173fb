"""The gRPC servicers: wiring only (request -> one service call -> response)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from weir.v1 import deployments_pb2 as pb
from weir.v1 import deployments_pb2_grpc
from weir_deployments import deployments, runs, work_pools, workers

if TYPE_CHECKING:
    from weir_deployments.runtime import DeploymentsRuntime

Ctx = Any  # grpc.aio.ServicerContext


class DeploymentServicer(deployments_pb2_grpc.DeploymentServiceServicer):
    def __init__(self, rt: DeploymentsRuntime) -> None:
        self.rt = rt
        self.svc = rt.svc

    async def UpsertDeployment(self, request: pb.UpsertDeploymentRequest, context: Ctx) -> pb.UpsertDeploymentResponse:
        answer = await deployments.upsert(self.svc, self.rt.orch, request)
        self.rt.scheduler.wake()
        return answer

    async def GetDeployment(self, request: pb.GetDeploymentRequest, context: Ctx) -> pb.GetDeploymentResponse:
        return await deployments.get(self.svc, request)

    async def ListDeployments(self, request: pb.ListDeploymentsRequest, context: Ctx) -> pb.ListDeploymentsResponse:
        return await deployments.list_deployments(self.svc, request)

    async def DeleteDeployment(self, request: pb.DeleteDeploymentRequest, context: Ctx) -> pb.DeleteDeploymentResponse:
        return await deployments.delete_deployment(self.svc, self.rt.orch, request)

    async def SetDeploymentPaused(
        self, request: pb.SetDeploymentPausedRequest, context: Ctx
    ) -> pb.SetDeploymentPausedResponse:
        answer = await deployments.set_paused(self.svc, self.rt.orch, request)
        self.rt.scheduler.wake()
        self.rt.wake_pool(answer.deployment.work_pool_name)
        return answer

    async def CreateFlowRunFromDeployment(
        self, request: pb.CreateFlowRunFromDeploymentRequest, context: Ctx
    ) -> pb.CreateFlowRunFromDeploymentResponse:
        answer, pool = await runs.create_from_deployment(self.svc, self.rt.orch, request)
        self.rt.wake_pool(pool)
        return answer

    async def ValidateJobVariables(
        self, request: pb.ValidateJobVariablesRequest, context: Ctx
    ) -> pb.ValidateJobVariablesResponse:
        return await job_variables_check(self.rt, request)

    async def UpsertWorkPool(self, request: pb.UpsertWorkPoolRequest, context: Ctx) -> pb.UpsertWorkPoolResponse:
        answer = await work_pools.upsert_pool(self.svc, request)
        self.rt.wake_pool(answer.work_pool.name)
        return answer

    async def GetWorkPool(self, request: pb.GetWorkPoolRequest, context: Ctx) -> pb.GetWorkPoolResponse:
        return await work_pools.get_pool(self.svc, request)

    async def ListWorkPools(self, request: pb.ListWorkPoolsRequest, context: Ctx) -> pb.ListWorkPoolsResponse:
        return await work_pools.list_pools(self.svc, request)

    async def DeleteWorkPool(self, request: pb.DeleteWorkPoolRequest, context: Ctx) -> pb.DeleteWorkPoolResponse:
        return await work_pools.delete_pool(self.svc, request)

    async def SetWorkPoolPaused(
        self, request: pb.SetWorkPoolPausedRequest, context: Ctx
    ) -> pb.SetWorkPoolPausedResponse:
        answer = await work_pools.set_pool_paused(self.svc, request)
        self.rt.wake_pool(request.name)
        return answer

    async def UpsertWorkQueue(self, request: pb.UpsertWorkQueueRequest, context: Ctx) -> pb.UpsertWorkQueueResponse:
        answer = await work_pools.upsert_queue(self.svc, request)
        self.rt.wake_pool(answer.work_queue.work_pool_name)
        return answer

    async def GetWorkQueue(self, request: pb.GetWorkQueueRequest, context: Ctx) -> pb.GetWorkQueueResponse:
        return await work_pools.get_queue(self.svc, request)

    async def ListWorkQueues(self, request: pb.ListWorkQueuesRequest, context: Ctx) -> pb.ListWorkQueuesResponse:
        return await work_pools.list_queues(self.svc, request)

    async def DeleteWorkQueue(self, request: pb.DeleteWorkQueueRequest, context: Ctx) -> pb.DeleteWorkQueueResponse:
        return await work_pools.delete_queue(self.svc, request)

    async def SetWorkQueuePaused(
        self, request: pb.SetWorkQueuePausedRequest, context: Ctx
    ) -> pb.SetWorkQueuePausedResponse:
        answer = await work_pools.set_queue_paused(self.svc, request)
        self.rt.wake_pool(request.work_pool_name)
        return answer

    async def ListWorkers(self, request: pb.ListWorkersRequest, context: Ctx) -> pb.ListWorkersResponse:
        return await workers.list_workers(self.svc, request)


class WorkerServicer(deployments_pb2_grpc.WorkerServiceServicer):
    def __init__(self, rt: DeploymentsRuntime) -> None:
        self.rt = rt

    async def Connect(
        self, request_iterator: AsyncIterator[pb.WorkerMessage], context: Ctx
    ) -> AsyncIterator[pb.ServerMessage]:
        async for msg in self.rt.streams.connect(request_iterator):
            yield msg


async def job_variables_check(
    rt: DeploymentsRuntime, req: pb.ValidateJobVariablesRequest
) -> pb.ValidateJobVariablesResponse:
    problem = await runs.check_job_variables(rt.svc, req)
    if problem is None:
        return pb.ValidateJobVariablesResponse(valid=True)
    return pb.ValidateJobVariablesResponse(
        valid=False, layer=problem.layer, field=problem.field, message=problem.message
    )
