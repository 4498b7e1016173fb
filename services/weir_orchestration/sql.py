"""SQL helpers shared by the data-access functions of this service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from weir_kit.db import Database
from weir_orchestration.models import flow_runs, logs, run_states, task_runs


def insert_ignore(db: Database, table: Table) -> Any:
    """INSERT that skips rows hitting any unique key (ON CONFLICT DO NOTHING / INSERT OR IGNORE)."""
    dialect = postgresql if db.is_postgres else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


async def purge_flow_runs(session: AsyncSession, ids: Sequence[str]) -> None:
    """Delete flow runs with their task runs, states and logs."""
    if not ids:
        return
    ids = list(ids)
    task_ids = select(task_runs.c.id).where(task_runs.c.flow_run_id.in_(ids))
    await session.execute(
        delete(run_states).where(or_(run_states.c.run_id.in_(ids), run_states.c.run_id.in_(task_ids)))
    )
    await session.execute(delete(logs).where(logs.c.flow_run_id.in_(ids)))
    await session.execute(delete(task_runs).where(task_runs.c.flow_run_id.in_(ids)))
    await session.execute(delete(flow_runs).where(flow_runs.c.id.in_(ids)))


async def purge_task_run(session: AsyncSession, task_run_id: str) -> None:
    await session.execute(delete(run_states).where(run_states.c.run_id == task_run_id))
    await session.execute(delete(logs).where(logs.c.task_run_id == task_run_id))
    await session.execute(delete(task_runs).where(task_runs.c.id == task_run_id))
