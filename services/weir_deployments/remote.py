"""The deployments service's line to orchestration (gRPC, through the SDK's typed client).

Flow runs belong to orchestration: this service creates them, proposes
PENDING when it hands one to a worker, and repairs assignments, always with
a proposal (never by writing orchestration's tables).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from weir.client import AsyncWeirClient
from weir.client.types import FlowRun, ProposalResult, RunPolicy, State, StateDetails, StateType


class Orchestration:
    def __init__(self, address: str, api_key: str | None) -> None:
        self.client = AsyncWeirClient(address, api_key=api_key, timeout=10.0)

    async def close(self) -> None:
        await self.client.close()

    async def create_run(self, flow_run_id: str, request: dict[str, Any]) -> FlowRun:
        """Create the run described by a ``deployment_runs.create_request`` (idempotent by id)."""
        when = datetime.fromisoformat(request["scheduled_time"])
        return await self.client.create_flow_run(
            id=flow_run_id,
            flow_name=request["flow_name"],
            name=request.get("name") or None,
            parameters=request.get("parameters") or {},
            tags=request.get("tags") or (),
            deployment_id=request["deployment_id"],
            parent_task_run_id=request.get("parent_task_run_id") or None,
            idempotency_key=request.get("idempotency_key") or flow_run_id,
            state=State(type=StateType.SCHEDULED, name="Scheduled", details=StateDetails(scheduled_time=when)),
            policy=RunPolicy(
                retries=request.get("retries", 0), retry_delay_seconds=tuple(request.get("retry_delay_seconds", ()))
            ),
        )

    async def claim(self, flow_run_id: str, token: str) -> ProposalResult:
        """Propose PENDING for a worker: the one proposal that can win a run (the token fences it)."""
        return await self.client.set_flow_run_state(
            flow_run_id,
            State(type=StateType.PENDING, details=StateDetails(fencing_token=token)),
            idempotency_key=f"claim-{token}",
            fencing_token=token,
        )

    async def reschedule(self, run: FlowRun, when: datetime, message: str) -> ProposalResult:
        """Put a run back to SCHEDULED (clearing its token) unless its state changed since it was read."""
        name = run.state.name if run.state is not None and run.state.type is StateType.SCHEDULED else "Scheduled"
        return await self.client.set_flow_run_state(
            run.id,
            State(type=StateType.SCHEDULED, name=name, message=message, details=StateDetails(scheduled_time=when)),
            force=True,
            expected_state_id=run.state.id if run.state is not None else None,
        )

    async def cancel(self, flow_run_id: str, message: str) -> ProposalResult:
        return await self.client.set_flow_run_state(
            flow_run_id, State(type=StateType.CANCELLED, message=message), force=True
        )

    async def read(self, flow_run_id: str) -> FlowRun:
        return await self.client.read_flow_run(flow_run_id)

    async def delete(self, flow_run_id: str) -> None:
        await self.client.delete_flow_run(flow_run_id)
