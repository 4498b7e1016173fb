"""The scheduler: turns deployment schedules into SCHEDULED flow runs, ahead of time.

Each schedule row keeps a durable cursor (the last occurrence that has a
run). A round takes the active schedules of unpaused deployments (row locks
with ``SKIP LOCKED`` on Postgres, so replicas share the work), computes the
occurrences strictly after the cursor, inserts their runs and moves the
cursor, all in one transaction. A run's id is derived from (schedule,
occurrence), so even a replayed round cannot create a second run for one
occurrence; the cursor means a restart neither repeats nor skips one.

How far ahead: at least ``scheduler_min_runs`` runs and every run within
``scheduler_min_horizon_seconds``, but at most ``scheduler_max_runs``
waiting runs per schedule and nothing beyond ``scheduler_max_horizon_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from weir_deployments import schedules
from weir_deployments.deployments import WAITING
from weir_deployments.models import deployment_runs, deployments
from weir_deployments.models import schedules as schedule_table
from weir_deployments.remote import Orchestration
from weir_deployments.runs import RUN_NAMESPACE, create_request, materialize, new_row
from weir_deployments.settings import DeploymentsSettings
from weir_deployments.sql import insert_ignore, locked
from weir_deployments.work_pools import fetch_pool
from weir_kit.loops import BackgroundLoop
from weir_kit.runtime import ServiceContext

log = logging.getLogger("weir.deployments.scheduler")


def spec_of(row: Any) -> schedules.ScheduleSpec:
    return schedules.ScheduleSpec(
        kind=row.kind,
        interval=timedelta(seconds=row.interval_seconds) if row.interval_seconds is not None else None,
        cron=row.cron,
        rrule=row.rrule,
        anchor=row.anchor,
        timezone=row.timezone,
        active=row.active,
    )


class Scheduler(BackgroundLoop):
    loop_name = "deployments-scheduler"

    def __init__(
        self, svc: ServiceContext, settings: DeploymentsSettings, orch: Orchestration, on_runs: Callable[[str], None]
    ) -> None:
        super().__init__()
        self.svc = svc
        self.settings = settings
        self.orch = orch
        self.on_runs = on_runs
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.schedule_once()
            except Exception:
                log.exception("scheduler round failed; trying again next round")
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.settings.scheduler_interval_seconds)
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def schedule_once(self) -> int:
        """One round; returns how many runs it created."""
        s = self.settings
        now = self.svc.clock()
        max_until = now + timedelta(seconds=s.scheduler_max_horizon_seconds)
        min_until = now + timedelta(seconds=s.scheduler_min_horizon_seconds)
        c, r = schedule_table.c, deployment_runs.c
        created: list[str] = []
        pools: set[str] = set()
        async with self.svc.db.transaction() as session:
            query = (
                select(schedule_table)
                .join(deployments, deployments.c.id == c.deployment_id)
                .where(c.active.is_(True), deployments.c.paused.is_(False), c.cursor < max_until)
            )
            rows = (await session.execute(locked(self.svc.db, query, of=schedule_table))).all()
            for row in rows:
                waiting = (
                    await session.execute(select(func.count()).where(r.schedule_id == row.id, r.status.in_(WAITING)))
                ).scalar_one()
                room = s.scheduler_max_runs - waiting
                if room <= 0:
                    continue
                times = schedules.occurrences(spec_of(row), row.cursor, max_until, room)
                times = [t for i, t in enumerate(times) if waiting + i < s.scheduler_min_runs or t <= min_until]
                if not times:
                    continue
                dep = (await session.execute(select(deployments).where(deployments.c.id == row.deployment_id))).one()
                if not dep.work_pool_name:
                    continue
                pool = await fetch_pool(session, dep.work_pool_name)
                queue = dep.work_queue_name or pool.default_queue_name
                values = []
                for when in times:
                    run_id = str(uuid.uuid5(RUN_NAMESPACE, f"{row.id}/{when.isoformat()}"))
                    request = create_request(
                        dep, when, parameters=dict(dep.parameters), idempotency_key=f"schedule-{run_id}"
                    )
                    values.append(new_row(run_id, dep, queue, when, request, now, schedule_id=row.id))
                    created.append(run_id)
                await session.execute(insert_ignore(self.svc.db, deployment_runs), values)
                await session.execute(update(schedule_table).where(c.id == row.id).values(cursor=times[-1]))
                pools.add(pool.name)
        if created:
            log.info("scheduled %d runs", len(created))
            await materialize(self.svc, self.orch, created)
            for pool_name in pools:
                self.on_runs(pool_name)
        return len(created)
