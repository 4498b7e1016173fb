"""The deployments sweeper: repairs what a lost message or a dead process left behind.

Safe on every replica: it decides from rows and from orchestration's answer,
and every repair is conditional (``expected_state_id`` on the proposal, the
fencing token on the row update), so two replicas repairing one run do it once.

* runs created here but not yet in orchestration (``NEW``) are created;
* assignments not acknowledged in time go back to SCHEDULED;
* runs held by a worker that is gone (offline, or alive but no longer running
  them) and that are still waiting (SCHEDULED after a crash with retries
  left, or PENDING that never started) go back to the queue, without a token;
* workers whose heartbeats stopped are OFFLINE;
* finished rows are forgotten after ``done_retention_seconds``.

RUNNING runs whose heartbeats stopped, CANCELLING past its timeout and Late
runs are orchestration's sweeper's job (it owns the heartbeats); their
states reach this service as events (``tracker.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from weir.client.types import StateType
from weir.errors import NotFound, WeirError
from weir_deployments.models import REFUSED, deployment_runs, workers
from weir_deployments.remote import Orchestration
from weir_deployments.runs import materialize, pending_materialization
from weir_deployments.settings import DeploymentsSettings
from weir_kit.loops import BackgroundLoop
from weir_kit.runtime import ServiceContext

log = logging.getLogger("weir.deployments.sweeper")

_TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}


class Sweeper(BackgroundLoop):
    loop_name = "deployments-sweeper"

    def __init__(
        self,
        svc: ServiceContext,
        settings: DeploymentsSettings,
        orch: Orchestration,
        connected: Callable[[], set[str]],
        on_requeued: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.svc = svc
        self.settings = settings
        self.orch = orch
        self.connected = connected
        self.on_requeued = on_requeued

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweeper_interval_seconds)
            try:
                await self.sweep_once()
            except Exception:
                log.exception("deployments sweeper round failed; trying again next round")

    async def sweep_once(self) -> int:
        now = self.svc.clock()
        s = self.settings
        repaired = await materialize(
            self.svc, self.orch, await pending_materialization(self.svc, now - timedelta(seconds=1))
        )
        await self._mark_offline(now)
        for row in await self._suspects(now):
            if await self._repair(row, now):
                repaired += 1
        async with self.svc.db.transaction() as session:
            cutoff = now - timedelta(seconds=s.done_retention_seconds)
            await session.execute(
                delete(deployment_runs).where(
                    deployment_runs.c.status.in_(("DONE", REFUSED)), deployment_runs.c.updated < cutoff
                )
            )
        return repaired

    async def _mark_offline(self, now: datetime) -> None:
        cutoff = now - timedelta(seconds=self.settings.worker_offline_after_seconds)
        local = self.connected()
        async with self.svc.db.transaction() as session:
            query = update(workers).where(workers.c.status == "ONLINE", workers.c.last_heartbeat < cutoff)
            if local:
                query = query.where(workers.c.id.not_in(list(local)))
            await session.execute(query.values(status="OFFLINE", free_slots=0))

    async def _suspects(self, now: datetime) -> list[Any]:
        """Claimed rows that may need a repair."""
        c, w = deployment_runs.c, workers.c
        ack_cutoff = now - timedelta(seconds=self.settings.assignment_ack_timeout_seconds)
        query = (
            select(deployment_runs, w.status.label("worker_status"), w.active_flow_run_ids, w.last_heartbeat)
            .join(workers, workers.c.id == c.worker_id, isouter=True)
            .where(
                c.status == "CLAIMED",
                or_(
                    and_(c.acked.is_(False), c.claimed_at < ack_cutoff),
                    c.state_type.in_(("SCHEDULED", "PENDING")),
                ),
            )
            .limit(200)
        )
        async with self.svc.db.read() as session:
            return list((await session.execute(query)).all())

    def _worker_lost_it(self, row: Any, now: datetime) -> bool:
        """True when the worker holding ``row`` is not running it any more."""
        if row.worker_status != "ONLINE":
            return True
        if row.acked is False and row.claimed_at < now - timedelta(
            seconds=self.settings.assignment_ack_timeout_seconds
        ):
            return True
        # Its heartbeat came after the run's last state and does not list it: the worker has let it go.
        seen_after = (
            row.last_heartbeat is not None
            and row.state_timestamp is not None
            and row.last_heartbeat > row.state_timestamp
        )
        return seen_after and row.flow_run_id not in (row.active_flow_run_ids or [])

    async def _repair(self, row: Any, now: datetime) -> bool:
        if not self._worker_lost_it(row, now):
            return False
        try:
            run = await self.orch.read(row.flow_run_id)
        except NotFound:
            await self._settle(row, status="DONE")
            return True
        except WeirError as exc:
            log.warning("sweeper cannot read flow run %s: %s", row.flow_run_id, exc)
            return False
        state = run.state
        if state is None:
            return False
        if state.type in _TERMINAL:
            await self._settle(row, status="DONE", state_type=state.type.value, state_name=state.name)
            return True
        if state.type is StateType.RUNNING or state.type is StateType.CANCELLING:
            # Alive (its process heartbeats to orchestration) or being cancelled: not ours to move.
            await self._settle(row, status="CLAIMED", acked=True, keep_worker=True)
            return False
        if state.type not in (StateType.SCHEDULED, StateType.PENDING):
            return False
        when = state.details.scheduled_time if state.type is StateType.SCHEDULED else None
        when = when or row.scheduled_time
        try:
            result = await self.orch.reschedule(run, when, "given back to the queue: its worker did not run it")
        except WeirError as exc:
            log.warning("sweeper cannot requeue flow run %s: %s", row.flow_run_id, exc)
            return False
        if not result.accepted:
            return False
        await self._settle(row, status="SCHEDULED", scheduled_time=when, state_type="SCHEDULED")
        log.info("flow run %s back in the queue (worker %s lost it)", row.flow_run_id, row.worker_id)
        self.on_requeued(row.work_pool_name)
        return True

    async def _settle(self, row: Any, *, status: str, keep_worker: bool = False, **values: Any) -> None:
        c = deployment_runs.c
        if not keep_worker:
            values.update(worker_id=None, fencing_token=None, claimed_at=None, acked=False)
        async with self.svc.db.transaction() as session:
            await session.execute(
                update(deployment_runs)
                .where(c.flow_run_id == row.flow_run_id, c.fencing_token == row.fencing_token, c.status == "CLAIMED")
                .values(status=status, updated=self.svc.clock(), **values)
            )
