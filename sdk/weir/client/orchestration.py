"""Client methods of ``OrchestrationService``: flows, runs, states, logs.

Mixed into :class:`weir.client.AsyncWeirClient`; use them from there::

    async with await get_client() as client:
        run = await client.create_flow_run(flow_name="etl", parameters={"day": "mon"})
        result = await client.set_flow_run_state(run.id, State(type=StateType.RUNNING))
        if result.decision is Decision.WAIT:
            await asyncio.sleep(result.delay_seconds)

Every ``list_*`` method returns one :class:`Page`; the matching ``iter_*``
helper follows the pages for you.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

from weir._proto import dict_to_struct, to_timestamp
from weir.client._convert import flow_runs as fr
from weir.client._convert import flows as fl
from weir.client._convert import history as hi
from weir.client._convert import logs as lg
from weir.client._convert import states as st
from weir.client._convert import task_runs as tr
from weir.client._convert._common import page_request
from weir.client._grpc import Transport
from weir.client._paging import follow_pages
from weir.client._proposals import STREAM_MAX_BYTES, ProposalStream, StreamUnsupportedError
from weir.client.types import (
    Flow,
    FlowFilter,
    FlowRun,
    FlowRunFilter,
    FlowRunSort,
    HistoryBucket,
    LogFilter,
    LogRecord,
    Page,
    ProposalResult,
    RunPolicy,
    State,
    TaskRun,
    TaskRunFilter,
)
from weir.v1 import orchestration_pb2 as pb
from weir.v1 import orchestration_pb2_grpc


class OrchestrationAPI:
    """Flows, flow runs, task runs, states, logs and run history."""

    _transport: Transport
    _orch_cache: tuple[object, Any] | None = None
    _proposal_cache: tuple[object, ProposalStream] | None = None

    @property
    def _orchestration_stub(self) -> Any:
        """The raw async stub (internal: the SDK engine drives SyncRuns with it)."""
        channel = self._transport.channel_for("orchestration")
        if self._orch_cache is None or self._orch_cache[0] is not channel:
            self._orch_cache = (channel, orchestration_pb2_grpc.OrchestrationServiceStub(channel))
        return self._orch_cache[1]

    async def _read(self, method: str, request: Any) -> Any:
        stub = self._orchestration_stub
        return await self._transport.unary(getattr(stub, method), request, idempotent=True)

    async def _write(self, method: str, request: Any) -> Any:
        stub = self._orchestration_stub
        return await self._transport.unary(getattr(stub, method), request)

    @property
    def _proposals(self) -> ProposalStream:
        """The ProposeStates stream of the current channel (a new loop gets a new channel)."""
        channel = self._transport.channel_for("orchestration")
        if self._proposal_cache is None or self._proposal_cache[0] is not channel:
            stub = self._orchestration_stub
            stream = ProposalStream(self._transport, lambda: stub.ProposeStates(metadata=self._transport.metadata))
            self._proposal_cache = (channel, stream)
        return self._proposal_cache[1]

    async def _propose(self, method: str, request: Any) -> pb.ProposalResult:
        """A proposal over the ProposeStates stream; unary when too large for it or not served."""
        stream = self._proposals
        if not stream.unsupported and request.ByteSize() <= STREAM_MAX_BYTES:
            field = "flow_run" if method == "SetFlowRunState" else "task_run"
            try:
                return await stream.propose(**{field: request})
            except StreamUnsupportedError:
                pass  # nothing was decided: ask the unary call instead
        return (await self._write(method, request)).result

    # ------------------------------------------------------------- flows

    async def create_flow(self, name: str, *, tags: Iterable[str] = ()) -> Flow:
        """Create the flow ``name`` (or return it if it exists)."""
        resp = await self._write("CreateFlow", pb.CreateFlowRequest(name=name, tags=list(tags)))
        return fl.flow_from_proto(resp.flow)

    async def read_flow(self, flow_id: str | None = None, *, name: str | None = None) -> Flow:
        """Read a flow by id or by name (give exactly one)."""
        resp = await self._read("GetFlow", pb.GetFlowRequest(id=flow_id or "", name=name or ""))
        return fl.flow_from_proto(resp.flow)

    async def list_flows(
        self,
        filter: FlowFilter | None = None,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[Flow]:
        req = pb.ListFlowsRequest(filter=fl.flow_filter_to_proto(filter), page=page_request(page_size, page_token))
        resp = await self._read("ListFlows", req)
        return Page[Flow](
            items=[fl.flow_from_proto(m) for m in resp.flows],
            next_page_token=resp.next_page_token or None,
        )

    def iter_flows(self, filter: FlowFilter | None = None, *, page_size: int | None = None) -> AsyncIterator[Flow]:
        return follow_pages(lambda t: self.list_flows(filter, page_size=page_size, page_token=t))

    async def delete_flow(self, flow_id: str) -> None:
        await self._write("DeleteFlow", pb.DeleteFlowRequest(id=flow_id))

    # --------------------------------------------------------- flow runs

    async def create_flow_run(
        self,
        *,
        flow_id: str | None = None,
        flow_name: str | None = None,
        name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        parent_task_run_id: str | None = None,
        deployment_id: str | None = None,
        idempotency_key: str | None = None,
        state: State | None = None,
        policy: RunPolicy | None = None,
        id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> FlowRun:
        """Create a flow run of ``flow_id`` or ``flow_name`` (created if missing).

        The initial state is PENDING unless ``state`` says otherwise; a name is
        generated when none is given. A retry with the same ``idempotency_key``
        returns the first run instead of a second one.
        """
        req = pb.CreateFlowRunRequest(
            flow_id=flow_id or "",
            flow_name=flow_name or "",
            name=name or "",
            parameters=dict_to_struct(parameters),
            tags=list(tags),
            parent_task_run_id=parent_task_run_id or "",
            deployment_id=deployment_id or "",
            idempotency_key=idempotency_key or "",
            policy=fr.policy_to_proto(policy),
            id=id or "",
            context=dict_to_struct(context),
        )
        if state is not None:
            req.state.CopyFrom(st.state_to_proto(state))
        resp = await self._write("CreateFlowRun", req)
        return fr.flow_run_from_proto(resp.flow_run)

    async def read_flow_run(self, flow_run_id: str) -> FlowRun:
        resp = await self._read("GetFlowRun", pb.GetFlowRunRequest(id=flow_run_id))
        return fr.flow_run_from_proto(resp.flow_run)

    async def list_flow_runs(
        self,
        filter: FlowRunFilter | None = None,
        *,
        sort: FlowRunSort | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[FlowRun]:
        """One page of flow runs matching ``filter`` (newest first by default)."""
        req = pb.ListFlowRunsRequest(
            filter=fr.flow_run_filter_to_proto(filter),
            page=page_request(page_size, page_token),
            sort=fr.sort_to_proto(sort),
        )
        resp = await self._read("ListFlowRuns", req)
        return Page[FlowRun](
            items=[fr.flow_run_from_proto(m) for m in resp.flow_runs],
            next_page_token=resp.next_page_token or None,
        )

    def iter_flow_runs(
        self,
        filter: FlowRunFilter | None = None,
        *,
        sort: FlowRunSort | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[FlowRun]:
        return follow_pages(lambda t: self.list_flow_runs(filter, sort=sort, page_size=page_size, page_token=t))

    async def delete_flow_run(self, flow_run_id: str) -> None:
        await self._write("DeleteFlowRun", pb.DeleteFlowRunRequest(id=flow_run_id))

    async def set_flow_run_state(
        self,
        flow_run_id: str,
        state: State,
        *,
        force: bool = False,
        idempotency_key: str | None = None,
        expected_state_id: str | None = None,
        fencing_token: str | None = None,
    ) -> ProposalResult:
        """Propose ``state`` for a flow run; the server decides.

        Read ``result.decision``: ACCEPT (written), REJECT (``result.state`` is
        the run's state now), WAIT (propose again after
        ``result.delay_seconds``) or ABORT (stop). ``force`` bypasses the
        policy and is meant for operators.
        """
        proposal = st.proposal_to_proto(
            state,
            force=force,
            idempotency_key=idempotency_key,
            expected_state_id=expected_state_id,
            fencing_token=fencing_token,
        )
        req = pb.SetFlowRunStateRequest(flow_run_id=flow_run_id, proposal=proposal)
        return st.proposal_result_from_proto(await self._propose("SetFlowRunState", req))

    async def heartbeat_flow_run(self, flow_run_id: str) -> bool:
        """Record that the run is alive; True when it was asked to cancel."""
        req = pb.HeartbeatFlowRunRequest(flow_run_id=flow_run_id)
        resp = await self._write("HeartbeatFlowRun", req)
        return resp.cancel_requested

    # --------------------------------------------------------- task runs

    async def create_task_run(
        self,
        *,
        flow_run_id: str,
        name: str,
        task_key: str,
        dynamic_key: str,
        id: str | None = None,
        cache_key: str | None = None,
        tags: Iterable[str] = (),
        state: State | None = None,
        policy: RunPolicy | None = None,
        task_inputs: Mapping[str, Any] | None = None,
    ) -> TaskRun:
        """Create a task run; a resend with the same id or keys returns the first."""
        req = pb.CreateTaskRunRequest(
            id=id or "",
            flow_run_id=flow_run_id,
            name=name,
            task_key=task_key,
            dynamic_key=dynamic_key,
            cache_key=cache_key or "",
            tags=list(tags),
            policy=fr.policy_to_proto(policy),
            task_inputs=dict_to_struct(task_inputs),
        )
        if state is not None:
            req.state.CopyFrom(st.state_to_proto(state))
        resp = await self._write("CreateTaskRun", req)
        return tr.task_run_from_proto(resp.task_run)

    async def read_task_run(self, task_run_id: str) -> TaskRun:
        resp = await self._read("GetTaskRun", pb.GetTaskRunRequest(id=task_run_id))
        return tr.task_run_from_proto(resp.task_run)

    async def list_task_runs(
        self,
        filter: TaskRunFilter | None = None,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[TaskRun]:
        req = pb.ListTaskRunsRequest(
            filter=tr.task_run_filter_to_proto(filter), page=page_request(page_size, page_token)
        )
        resp = await self._read("ListTaskRuns", req)
        return Page[TaskRun](
            items=[tr.task_run_from_proto(m) for m in resp.task_runs],
            next_page_token=resp.next_page_token or None,
        )

    def iter_task_runs(
        self, filter: TaskRunFilter | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[TaskRun]:
        return follow_pages(lambda t: self.list_task_runs(filter, page_size=page_size, page_token=t))

    async def delete_task_run(self, task_run_id: str) -> None:
        await self._write("DeleteTaskRun", pb.DeleteTaskRunRequest(id=task_run_id))

    async def set_task_run_state(
        self,
        task_run_id: str,
        state: State,
        *,
        force: bool = False,
        idempotency_key: str | None = None,
        expected_state_id: str | None = None,
        fencing_token: str | None = None,
    ) -> ProposalResult:
        """Propose ``state`` for a task run (see :meth:`set_flow_run_state`)."""
        proposal = st.proposal_to_proto(
            state,
            force=force,
            idempotency_key=idempotency_key,
            expected_state_id=expected_state_id,
            fencing_token=fencing_token,
        )
        req = pb.SetTaskRunStateRequest(task_run_id=task_run_id, proposal=proposal)
        return st.proposal_result_from_proto(await self._propose("SetTaskRunState", req))

    # ------------------------------------------------------------ states

    async def list_states(
        self,
        *,
        flow_run_id: str | None = None,
        task_run_id: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[State]:
        """The state history of one flow run or one task run, oldest first."""
        req = pb.ListStatesRequest(
            flow_run_id=flow_run_id or "",
            task_run_id=task_run_id or "",
            page=page_request(page_size, page_token),
        )
        resp = await self._read("ListStates", req)
        return Page[State](
            items=[st.state_from_proto(m) for m in resp.states],
            next_page_token=resp.next_page_token or None,
        )

    def iter_states(
        self,
        *,
        flow_run_id: str | None = None,
        task_run_id: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[State]:
        return follow_pages(
            lambda t: self.list_states(
                flow_run_id=flow_run_id, task_run_id=task_run_id, page_size=page_size, page_token=t
            )
        )

    # -------------------------------------------------------------- logs

    async def write_logs(self, logs: Iterable[LogRecord]) -> int:
        """Write log records; returns how many the server wrote."""
        req = pb.WriteLogsRequest(logs=[lg.log_to_proto(r) for r in logs])
        resp = await self._write("WriteLogs", req)
        return resp.written

    async def list_logs(
        self,
        filter: LogFilter | None = None,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[LogRecord]:
        """One page of log records, oldest first."""
        req = pb.ListLogsRequest(filter=lg.log_filter_to_proto(filter), page=page_request(page_size, page_token))
        resp = await self._read("ListLogs", req)
        return Page[LogRecord](
            items=[lg.log_from_proto(m) for m in resp.logs],
            next_page_token=resp.next_page_token or None,
        )

    def iter_logs(self, filter: LogFilter | None = None, *, page_size: int | None = None) -> AsyncIterator[LogRecord]:
        return follow_pages(lambda t: self.list_logs(filter, page_size=page_size, page_token=t))

    # ----------------------------------------------------------- history

    async def run_history(
        self,
        *,
        start: datetime,
        end: datetime,
        interval_seconds: float,
        filter: FlowRunFilter | None = None,
    ) -> list[HistoryBucket]:
        """Counts of flow runs per state in buckets of ``interval_seconds``."""
        req = pb.RunHistoryRequest(
            start=to_timestamp(start),
            end=to_timestamp(end),
            interval_seconds=interval_seconds,
            filter=fr.flow_run_filter_to_proto(filter),
        )
        resp = await self._read("RunHistory", req)
        return [hi.bucket_from_proto(b) for b in resp.buckets]
