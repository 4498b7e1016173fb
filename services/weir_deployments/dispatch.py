"""The dispatcher: hands due runs to connected workers with credit, by push.

For each connected worker with credit it claims due ``SCHEDULED`` runs of
the worker's pool (and queues) in one transaction, with ``FOR UPDATE SKIP
LOCKED`` on Postgres so replicas never claim the same row, honouring pool,
queue and deployment pause and concurrency limits (ordered by queue
priority, then scheduled time). Each claimed run gets a fresh fencing token
and a PENDING proposal to orchestration carrying it (idempotency key
``claim-<token>``); only an accepted proposal becomes an ``Assign``.

It is woken at once by new runs, credits and freed slots (on this replica,
or on another one through a NATS core subject), and also every
``dispatch_interval_seconds`` for runs whose time has come.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from weir._proto import dict_to_struct
from weir.client.types import Decision, StateType
from weir.errors import NotFound, WeirError
from weir.v1 import deployments_pb2 as pb
from weir_deployments.models import deployment_runs, deployments, work_pools, work_queues
from weir_deployments.remote import Orchestration
from weir_deployments.runs import job_configuration
from weir_deployments.settings import DeploymentsSettings
from weir_deployments.sql import locked
from weir_deployments.workers import Hub, WorkerConnection
from weir_kit.loops import BackgroundLoop
from weir_kit.runtime import ServiceContext

log = logging.getLogger("weir.deployments.dispatch")

_TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}


@dataclass
class Claimed:
    row: Any
    token: str
    deployment: Any
    pool: Any


class Dispatcher(BackgroundLoop):
    loop_name = "deployments-dispatcher"

    def __init__(self, svc: ServiceContext, settings: DeploymentsSettings, hub: Hub, orch: Orchestration) -> None:
        super().__init__()
        self.svc = svc
        self.settings = settings
        self.hub = hub
        self.orch = orch
        self._wakeup = asyncio.Event()

    def wake(self, pool: str = "") -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.settings.dispatch_interval_seconds)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                await self.dispatch_once()
            except Exception:
                log.exception("dispatch round failed; trying again")
                await asyncio.sleep(0.2)

    async def dispatch_once(self) -> int:
        """One round over every connected worker with credit; returns how many runs were assigned."""
        assigned = 0
        for conn in list(self.hub.connections.values()):
            if conn.credit <= 0:
                continue
            claimed, cancelled = await self._claim(conn)
            for item in cancelled:
                await self._cancel_new(item)
            if claimed:
                results = await asyncio.gather(*(self._assign(conn, item) for item in claimed))
                assigned += sum(results)
        return assigned

    async def _claim(self, conn: WorkerConnection) -> tuple[list[Claimed], list[Any]]:
        now = self.svc.clock()
        c, q = deployment_runs.c, work_queues.c
        async with self.svc.db.transaction() as session:
            pool = (await session.execute(select(work_pools).where(work_pools.c.name == conn.pool))).first()
            if pool is None or pool.paused:
                return [], []
            queues = {
                r.name: r
                for r in (await session.execute(select(work_queues).where(q.work_pool_name == pool.name))).all()
            }
            open_queues = [n for n, r in queues.items() if not r.paused and (not conn.queues or n in conn.queues)]
            if not open_queues:
                return [], []
            by_queue = await _active(session, c.work_queue_name, c.work_pool_name == pool.name)
            room = conn.credit
            if pool.concurrency_limit:
                room = min(room, pool.concurrency_limit - sum(by_queue.values()))
            if room <= 0:
                return [], []
            query = (
                select(deployment_runs)
                .join(work_queues, and_(q.work_pool_name == c.work_pool_name, q.name == c.work_queue_name))
                .where(
                    c.work_pool_name == pool.name,
                    c.status == "SCHEDULED",
                    c.scheduled_time <= now,
                    c.work_queue_name.in_(open_queues),
                )
                .order_by(q.priority, c.scheduled_time)
                .limit(max(room * 4, 16))
            )
            candidates = (await session.execute(locked(self.svc.db, query, of=deployment_runs))).all()
            if not candidates:
                return [], []
            dep_ids = list({r.deployment_id for r in candidates})
            deps = {
                r.id: r for r in (await session.execute(select(deployments).where(deployments.c.id.in_(dep_ids)))).all()
            }
            # A deployment's runs may sit in other queues (a run-level override): count them all.
            by_deployment = await _active(session, c.deployment_id, c.deployment_id.in_(dep_ids))
            claimed: list[Claimed] = []
            cancelled: list[Any] = []
            for row in candidates:
                if len(claimed) >= room:
                    break
                dep = deps.get(row.deployment_id)
                queue = queues[row.work_queue_name]
                if dep is None or dep.paused:
                    continue
                if queue.concurrency_limit and by_queue[queue.name] >= queue.concurrency_limit:
                    continue
                if dep.concurrency_limit and by_deployment[dep.id] >= dep.concurrency_limit:
                    if dep.collision_strategy == "CANCEL_NEW":
                        cancelled.append(row)
                    continue
                by_queue[queue.name] += 1
                by_deployment[dep.id] += 1
                claimed.append(Claimed(row, str(uuid.uuid4()), dep, pool))
            for item in claimed:
                await session.execute(
                    update(deployment_runs)
                    .where(c.flow_run_id == item.row.flow_run_id)
                    .values(
                        status="CLAIMED",
                        worker_id=conn.id,
                        fencing_token=item.token,
                        claimed_at=now,
                        acked=False,
                        updated=now,
                    )
                )
            if cancelled:
                await session.execute(
                    update(deployment_runs)
                    .where(c.flow_run_id.in_([r.flow_run_id for r in cancelled]))
                    .values(status="DONE", state_type="CANCELLED", state_name="Cancelled", updated=now)
                )
        conn.credit -= len(claimed)
        return claimed, cancelled

    async def _assign(self, conn: WorkerConnection, item: Claimed) -> int:
        row = item.row
        try:
            result = await self.orch.claim(row.flow_run_id, item.token)
        except NotFound:
            await self._release(row.flow_run_id, item.token, status="DONE")
            conn.credit += 1
            return 0
        except WeirError as exc:
            # Orchestration unreachable: the row stays CLAIMED and the sweeper repairs it.
            log.warning("could not claim flow run %s: %s", row.flow_run_id, exc)
            conn.credit += 1
            return 0
        if result.decision is Decision.ACCEPT:
            config = job_configuration(item.pool, item.deployment, row.job_variables)
            conn.send(
                pb.ServerMessage(
                    assign=pb.Assign(
                        flow_run_id=row.flow_run_id,
                        deployment_id=row.deployment_id,
                        entrypoint=item.deployment.entrypoint,
                        job_configuration=dict_to_struct(config),
                        fencing_token=item.token,
                        flow_name=item.deployment.flow_name,
                        work_queue_name=row.work_queue_name,
                    )
                )
            )
            return 1
        conn.credit += 1
        state = result.state
        if result.decision is Decision.WAIT:
            later = self.svc.clock() + timedelta(seconds=max(result.delay_seconds, 0.05))
            await self._release(row.flow_run_id, item.token, status="SCHEDULED", scheduled_time=later)
        elif state is not None and state.type in _TERMINAL:
            await self._release(row.flow_run_id, item.token, status="DONE", state_type=state.type.value)
        else:
            log.info("flow run %s not claimed: %s", row.flow_run_id, result.reason)
            later = self.svc.clock() + timedelta(seconds=1)
            await self._release(row.flow_run_id, item.token, status="SCHEDULED", scheduled_time=later)
        return 0

    async def _release(self, flow_run_id: str, token: str, *, status: str, **values: Any) -> None:
        c = deployment_runs.c
        async with self.svc.db.transaction() as session:
            await session.execute(
                update(deployment_runs)
                .where(c.flow_run_id == flow_run_id, c.fencing_token == token)
                .values(
                    status=status,
                    worker_id=None,
                    fencing_token=None,
                    claimed_at=None,
                    updated=self.svc.clock(),
                    **values,
                )
            )

    async def _cancel_new(self, row: Any) -> None:
        try:
            await self.orch.cancel(row.flow_run_id, "the deployment is at its concurrency limit (CANCEL_NEW)")
        except WeirError as exc:
            log.warning("could not cancel flow run %s: %s", row.flow_run_id, exc)


async def _active(session: AsyncSession, key: Any, where: Any) -> Counter[str]:
    """Runs in progress (claimed, not finished) matching ``where``, counted by ``key``."""
    c = deployment_runs.c
    rows = await session.execute(select(key, func.count()).where(where, c.status == "CLAIMED").group_by(key))
    return Counter(dict(rows.all()))
