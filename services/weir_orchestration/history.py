"""Run history: how many flow runs, by state, had their expected start in
each interval of a time window (the dashboard's bar chart)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select, type_coerce

from weir._proto import timestamp_to_datetime, to_timestamp
from weir.errors import InvalidArgument
from weir.v1 import orchestration_pb2 as pb
from weir_kit.db import UtcDateTime
from weir_kit.runtime import ServiceContext
from weir_orchestration.filters import flow_run_filter
from weir_orchestration.models import flow_runs
from weir_orchestration.proto import state_type_from_text
from weir_orchestration.settings import OrchestrationSettings


async def run_history(
    svc: ServiceContext, settings: OrchestrationSettings, req: pb.RunHistoryRequest
) -> pb.RunHistoryResponse:
    start = timestamp_to_datetime(req.start) if req.HasField("start") else None
    end = timestamp_to_datetime(req.end) if req.HasField("end") else None
    if start is None:
        raise InvalidArgument("start is required", field="start")
    if end is None:
        raise InvalidArgument("end is required", field="end")
    if end <= start:
        raise InvalidArgument("end must be later than start", field="end")
    if not req.interval_seconds >= 1:
        raise InvalidArgument(f"interval_seconds must be >= 1, got {req.interval_seconds:g}", field="interval_seconds")
    interval = timedelta(seconds=req.interval_seconds)
    count = math.ceil((end - start) / interval)
    if count > settings.history_max_buckets:
        raise InvalidArgument(
            f"{count} buckets asked, at most {settings.history_max_buckets}: widen interval_seconds",
            field="interval_seconds",
        )
    c = flow_runs.c
    when = type_coerce(func.coalesce(c.expected_start_time, c.created), UtcDateTime)
    query = select(when.label("when"), c.state_type, c.state_name).where(
        when >= start, when < end, *flow_run_filter(req.filter)
    )
    counts: list[Counter[tuple[str, str]]] = [Counter() for _ in range(count)]
    async with svc.db.read(cursor=True) as session:
        result = await session.stream(query)
        async for row in result:
            index = int((row.when - start) / interval)
            if 0 <= index < count:
                counts[index][(row.state_type or "", row.state_name or "")] += 1
    buckets = []
    for i, counter in enumerate(counts):
        lo = start + i * interval
        hi = min(lo + interval, end)
        buckets.append(
            pb.HistoryBucket(
                start=to_timestamp(lo),
                end=to_timestamp(hi),
                states=[
                    pb.StateCount(type=state_type_from_text(t), name=n, count=k)  # type: ignore[arg-type]
                    for (t, n), k in sorted(counter.items())
                ],
            )
        )
    return pb.RunHistoryResponse(buckets=buckets)
