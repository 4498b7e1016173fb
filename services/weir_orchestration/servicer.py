"""The gRPC servicer: wiring only (request -> one service call -> response)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from weir.v1 import orchestration_pb2 as pb
from weir.v1 import orchestration_pb2_grpc
from weir_kit.runtime import ServiceContext
from weir_orchestration import flow_runs, flows, history, logs, proposals, run_rows, states, sync, task_runs
from weir_orchestration.policy import RunKind
from weir_orchestration.settings import OrchestrationSettings

Ctx = Any  # grpc.aio.ServicerContext


class OrchestrationServicer(orchestration_pb2_grpc.OrchestrationServiceServicer):
    def __init__(self, svc: ServiceContext, settings: OrchestrationSettings) -> None:
        self.svc = svc
        self.settings = settings
        #: Flow runs this replica last wrote (Postgres proposals skip reading them).
        self.runs = run_rows.RunCache()

    async def CreateFlow(self, request: pb.CreateFlowRequest, context: Ctx) -> pb.CreateFlowResponse:
        return await flows.create_flow(self.svc, request)

    async def GetFlow(self, request: pb.GetFlowRequest, context: Ctx) -> pb.GetFlowResponse:
        return await flows.get_flow(self.svc, request)

    async def ListFlows(self, request: pb.ListFlowsRequest, context: Ctx) -> pb.ListFlowsResponse:
        return await flows.list_flows(self.svc, request)

    async def DeleteFlow(self, request: pb.DeleteFlowRequest, context: Ctx) -> pb.DeleteFlowResponse:
        return await flows.delete_flow(self.svc, request)

    async def CreateFlowRun(self, request: pb.CreateFlowRunRequest, context: Ctx) -> pb.CreateFlowRunResponse:
        return await flow_runs.create_flow_run(self.svc, request, self.runs)

    async def GetFlowRun(self, request: pb.GetFlowRunRequest, context: Ctx) -> pb.GetFlowRunResponse:
        return await flow_runs.get_flow_run(self.svc, request)

    async def ListFlowRuns(self, request: pb.ListFlowRunsRequest, context: Ctx) -> pb.ListFlowRunsResponse:
        return await flow_runs.list_flow_runs(self.svc, request)

    async def DeleteFlowRun(self, request: pb.DeleteFlowRunRequest, context: Ctx) -> pb.DeleteFlowRunResponse:
        return await flow_runs.delete_flow_run(self.svc, request)

    async def SetFlowRunState(self, request: pb.SetFlowRunStateRequest, context: Ctx) -> pb.SetFlowRunStateResponse:
        result = await states.set_state(self.svc, RunKind.FLOW, request.flow_run_id, request.proposal, self.runs)
        return pb.SetFlowRunStateResponse(result=result)

    async def HeartbeatFlowRun(self, request: pb.HeartbeatFlowRunRequest, context: Ctx) -> pb.HeartbeatFlowRunResponse:
        return await flow_runs.heartbeat(self.svc, request)

    async def CreateTaskRun(self, request: pb.CreateTaskRunRequest, context: Ctx) -> pb.CreateTaskRunResponse:
        return await task_runs.create_task_run(self.svc, request)

    async def GetTaskRun(self, request: pb.GetTaskRunRequest, context: Ctx) -> pb.GetTaskRunResponse:
        return await task_runs.get_task_run(self.svc, request)

    async def ListTaskRuns(self, request: pb.ListTaskRunsRequest, context: Ctx) -> pb.ListTaskRunsResponse:
        return await task_runs.list_task_runs(self.svc, request)

    async def DeleteTaskRun(self, request: pb.DeleteTaskRunRequest, context: Ctx) -> pb.DeleteTaskRunResponse:
        return await task_runs.delete_task_run(self.svc, request)

    async def SetTaskRunState(self, request: pb.SetTaskRunStateRequest, context: Ctx) -> pb.SetTaskRunStateResponse:
        result = await states.set_state(self.svc, RunKind.TASK, request.task_run_id, request.proposal)
        return pb.SetTaskRunStateResponse(result=result)

    async def ListStates(self, request: pb.ListStatesRequest, context: Ctx) -> pb.ListStatesResponse:
        return await states.list_states(self.svc, request)

    async def WriteLogs(self, request: pb.WriteLogsRequest, context: Ctx) -> pb.WriteLogsResponse:
        return await logs.write_logs(self.svc, self.settings, request)

    async def ListLogs(self, request: pb.ListLogsRequest, context: Ctx) -> pb.ListLogsResponse:
        return await logs.list_logs(self.svc, request)

    async def RunHistory(self, request: pb.RunHistoryRequest, context: Ctx) -> pb.RunHistoryResponse:
        return await history.run_history(self.svc, self.settings, request)

    async def SyncRuns(
        self, request_iterator: AsyncIterator[pb.SyncRunsRequest], context: Ctx
    ) -> AsyncIterator[pb.SyncRunsResponse]:
        async for response in sync.sync_runs(self.svc, self.settings, request_iterator):
            yield response

    async def ProposeStates(self, request_iterator: AsyncIterator[pb.ProposeStatesRequest], context: Ctx) -> None:
        await proposals.propose_states(self.svc, self.runs, context)
