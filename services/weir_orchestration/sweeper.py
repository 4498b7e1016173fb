"""The background loop that ends runs nobody else will end. Safe on every
replica: each round claims its rows with ``FOR UPDATE SKIP LOCKED`` on
Postgres, and every move goes through the same policy path as a client's
proposal (so a crashed run with retries left becomes AwaitingRetry).

* RUNNING flow runs whose heartbeat stopped -> CRASHED (not in the first
  heartbeat timeout after the service starts: during an outage nobody could heartbeat)
* CANCELLING flow runs past the cancelling timeout -> CANCELLED
* SCHEDULED flow runs past due by ``late_after_seconds`` -> SCHEDULED "Late"
* task runs still unfinished one heartbeat timeout after their flow run ended
  CRASHED or CANCELLED (the process that ran them is gone) -> CRASHED / CANCELLED
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select

from weir_kit.loops import BackgroundLoop
from weir_kit.runtime import ServiceContext
from weir_orchestration import states
from weir_orchestration.models import flow_runs, task_runs
from weir_orchestration.policy import CANCELLED, CRASHED, SCHEDULED, RunKind, State, StateDetails
from weir_orchestration.settings import OrchestrationSettings

log = logging.getLogger("weir.orchestration.sweeper")

#: How far back the orphan sweep looks for flow runs that ended CRASHED or CANCELLED (bounds its query).
ORPHAN_LOOKBACK = timedelta(days=1)
_UNFINISHED = ("SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED")


class Sweeper(BackgroundLoop):
    loop_name = "orchestration-sweeper"

    def __init__(self, svc: ServiceContext, settings: OrchestrationSettings) -> None:
        super().__init__()
        self.svc = svc
        self.settings = settings
        #: No run is crashed for a missing heartbeat before this: while the service was down,
        #: live runs could not heartbeat (they retry), so their silence proves nothing yet.
        self._crash_after = svc.clock() + timedelta(seconds=settings.heartbeat_timeout_seconds)

    def start(self) -> None:
        self._crash_after = self.svc.clock() + timedelta(seconds=self.settings.heartbeat_timeout_seconds)
        super().start()

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("sweeper round failed; trying again next round")
            await asyncio.sleep(self.settings.sweeper_interval_seconds)

    async def sweep_once(self) -> int:
        """One round; returns how many runs it moved."""
        now = self.svc.clock()
        s = self.settings
        c = flow_runs.c
        crash_cutoff = now - timedelta(seconds=s.heartbeat_timeout_seconds)
        crashed = and_(
            c.state_type == "RUNNING",
            c.state_timestamp < crash_cutoff,
            or_(c.heartbeat.is_(None), c.heartbeat < crash_cutoff),
        )
        cancel_cutoff = now - timedelta(seconds=s.cancelling_timeout_seconds)
        stuck = and_(c.state_type == "CANCELLING", c.state_timestamp < cancel_cutoff)
        late_cutoff = now - timedelta(seconds=s.late_after_seconds)
        late = and_(c.state_type == "SCHEDULED", c.state_name == "Scheduled", c.expected_start_time < late_cutoff)

        def crash(row: Any) -> State:
            return State(CRASHED, "Crashed", now, message=f"no heartbeat for {s.heartbeat_timeout_seconds:g}s")

        def cancel(row: Any) -> State:
            return State(
                CANCELLED, "Cancelled", now, message=f"still cancelling after {s.cancelling_timeout_seconds:g}s"
            )

        def mark_late(row: Any) -> State:
            return State(SCHEDULED, "Late", now, details=StateDetails(scheduled_time=row.expected_start_time))

        moved = 0
        rounds = [(crashed, crash)] if now >= self._crash_after else []
        for condition, make in (*rounds, (stuck, cancel), (late, mark_late)):
            moved += await self._move(condition, make, now)
        return moved + await self._end_orphans(now)

    async def _end_orphans(self, now: datetime) -> int:
        """End the task runs a crashed or cancelled flow run left behind (shown RUNNING forever otherwise)."""
        f, t = flow_runs.c, task_runs.c
        ended_before = now - timedelta(seconds=self.settings.heartbeat_timeout_seconds)
        query = (
            select(t.id, t.state_type, f.state_type.label("flow_state"))
            .join(flow_runs, f.id == t.flow_run_id)
            .where(
                f.state_type.in_(("CRASHED", "CANCELLED")),
                f.state_timestamp < ended_before,
                f.state_timestamp >= now - ORPHAN_LOOKBACK,
                t.state_type.in_(_UNFINISHED),
            )
        )

        def end(row: Any) -> State:
            flow_state = row.flow_state.capitalize()
            message = f"its flow run ended {flow_state} while it was {row.state_type.capitalize()}"
            if row.flow_state == "CANCELLED":
                return State(CANCELLED, "Cancelled", now, message=message)
            return State(CRASHED, "Crashed", now, message=message)

        return await self._propose(query, RunKind.TASK, end, now, lock=task_runs)

    async def _move(self, condition: ColumnElement[bool], make: Callable[[Any], State], now: datetime) -> int:
        query = select(flow_runs.c.id, flow_runs.c.expected_start_time).where(condition)
        return await self._propose(query, RunKind.FLOW, make, now)

    async def _propose(
        self, query: Select[Any], kind: RunKind, make: Callable[[Any], State], now: datetime, lock: Any = None
    ) -> int:
        """Propose ``make(row)`` for a batch of the rows ``query`` selects (by ``id``), skipping locked rows."""
        query = query.limit(self.settings.sweeper_batch_size)
        if self.svc.db.is_postgres:
            query = query.with_for_update(skip_locked=True, of=lock)
        async with self.svc.db.transaction() as session:
            rows = (await session.execute(query)).all()
            proposals = [states.Proposal(r.id, make(r), client_state_id=False) for r in rows]
            await states.apply(session, self.svc, kind, proposals, now)
        if rows:
            log.info("sweeper moved %d %s runs", len(rows), kind.value)
        return len(rows)
