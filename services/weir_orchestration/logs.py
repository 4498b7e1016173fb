"""Logs of flow runs and task runs: batched writes (a resent record with the
same id is skipped), filtered reads oldest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from weir._ids import new_id
from weir._proto import timestamp_to_datetime
from weir.errors import InvalidArgument
from weir.v1 import orchestration_pb2 as pb
from weir_kit import paging
from weir_kit.runtime import ServiceContext
from weir_kit.values import free_text
from weir_orchestration.filters import after_key, log_filter, next_token
from weir_orchestration.models import logs
from weir_orchestration.proto import log_to_pb, parse_id
from weir_orchestration.settings import OrchestrationSettings
from weir_orchestration.sql import insert_ignore


def log_values(
    records: Sequence[pb.LogRecord], now: datetime, settings: OrchestrationSettings, field: str = "logs"
) -> list[dict[str, Any]]:
    rows = []
    limit = settings.log_max_message_length
    for i, rec in enumerate(records):
        where = f"{field}[{i}]"
        flow_run_id = parse_id(rec.flow_run_id, f"{where}.flow_run_id", required=False)
        task_run_id = parse_id(rec.task_run_id, f"{where}.task_run_id", required=False)
        if not flow_run_id and not task_run_id:
            raise InvalidArgument(f"{where} needs a flow_run_id or a task_run_id", field=f"{where}.flow_run_id")
        message = free_text(rec.message if len(rec.message) <= limit else rec.message[:limit] + "…")
        rows.append(
            {
                "id": parse_id(rec.id, f"{where}.id", required=False) or new_id(),
                "flow_run_id": flow_run_id or None,
                "task_run_id": task_run_id or None,
                "name": free_text(rec.name[:255]),
                "level": rec.level,
                "message": message,
                "timestamp": (timestamp_to_datetime(rec.timestamp) if rec.HasField("timestamp") else None) or now,
                "created": now,
            }
        )
    return rows


async def insert_logs(session: AsyncSession, svc: ServiceContext, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert_ignore(svc.db, logs), list(rows))


async def write_logs(
    svc: ServiceContext, settings: OrchestrationSettings, req: pb.WriteLogsRequest
) -> pb.WriteLogsResponse:
    rows = log_values(req.logs, svc.clock(), settings)
    async with svc.db.transaction() as session:
        await insert_logs(session, svc, rows)
    return pb.WriteLogsResponse(written=len(rows))


async def list_logs(svc: ServiceContext, req: pb.ListLogsRequest) -> pb.ListLogsResponse:
    size = paging.page_size(req.page.page_size)
    c = logs.c
    conditions = [*log_filter(req.filter), *after_key(c.timestamp, c.id, req.page.page_token, descending=False)]
    query = select(logs).where(*conditions).order_by(c.timestamp, c.id).limit(size)
    async with svc.db.read() as session:
        rows = (await session.execute(query)).all()
    return pb.ListLogsResponse(
        logs=[log_to_pb(r) for r in rows], next_page_token=next_token(rows, size, lambda r: r.timestamp)
    )
