"""Logs (batched, deduplicated, filtered) and run history buckets."""

from __future__ import annotations

from datetime import timedelta

from weir._proto import to_timestamp
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb

from .helpers import new_flow_run, set_flow_state, state, uid


async def test_logs_write_dedupe_filter_page(orch):
    run = await new_flow_run(orch.stub)
    task_id = uid()
    now = orch.clock()
    records = [
        pb.LogRecord(
            id=uid(),
            flow_run_id=run.id,
            task_run_id=task_id if i % 2 else "",
            name="weir.test",
            level=10 * (1 + i % 4),
            message=f"line {i}",
            timestamp=to_timestamp(now + timedelta(milliseconds=i)),
        )
        for i in range(9)
    ]
    assert (await orch.stub.WriteLogs(pb.WriteLogsRequest(logs=records))).written == 9
    await orch.stub.WriteLogs(pb.WriteLogsRequest(logs=records[:3]))  # a resend
    assert await orch.count("logs") == 9

    async def messages(**filter_fields):
        resp = await orch.stub.ListLogs(pb.ListLogsRequest(filter=pb.LogFilter(**filter_fields)))
        return [r.message for r in resp.logs]

    assert await messages(flow_run_id=run.id) == [f"line {i}" for i in range(9)]
    assert await messages(task_run_id=task_id) == [f"line {i}" for i in range(1, 9, 2)]
    assert await messages(flow_run_id=run.id, level_ge=40) == ["line 3", "line 7"]
    assert await messages(text_like="LINE 8") == ["line 8"]
    seen, token = [], ""
    while True:
        resp = await orch.stub.ListLogs(
            pb.ListLogsRequest(
                filter=pb.LogFilter(flow_run_id=run.id), page=common_pb2.PageRequest(page_size=4, page_token=token)
            )
        )
        seen += [r.message for r in resp.logs]
        token = resp.next_page_token
        if not token:
            break
    assert seen == [f"line {i}" for i in range(9)]


async def test_long_log_messages_are_truncated(orch):
    run = await new_flow_run(orch.stub)
    limit = orch.orchestration_settings.log_max_message_length
    await orch.stub.WriteLogs(pb.WriteLogsRequest(logs=[pb.LogRecord(flow_run_id=run.id, message="x" * (limit + 50))]))
    got = (await orch.stub.ListLogs(pb.ListLogsRequest(filter=pb.LogFilter(flow_run_id=run.id)))).logs
    assert len(got[0].message) == limit + 1


async def test_run_history_buckets_count_states(orch):
    now = orch.clock().replace(microsecond=0)
    flow = unique_flow = f"hist-{uid()[:8]}"
    at = [now + timedelta(minutes=m) for m in (1, 2, 12)]
    runs = [
        await new_flow_run(orch.stub, flow_name=flow, state=state(common_pb2.SCHEDULED, scheduled_time=t)) for t in at
    ]
    orch.clock.advance(3600)
    await set_flow_state(orch.stub, runs[0].id, common_pb2.RUNNING)
    req = pb.RunHistoryRequest(
        start=to_timestamp(now),
        end=to_timestamp(now + timedelta(minutes=20)),
        interval_seconds=600,
        filter=pb.FlowRunFilter(flow_names=[unique_flow]),
    )
    buckets = (await orch.stub.RunHistory(req)).buckets
    assert len(buckets) == 2
    first = {(s.type, s.name): s.count for s in buckets[0].states}
    assert first == {(common_pb2.RUNNING, "Running"): 1, (common_pb2.SCHEDULED, "Scheduled"): 1}
    assert {(s.type, s.name): s.count for s in buckets[1].states} == {(common_pb2.SCHEDULED, "Scheduled"): 1}
    assert buckets[1].end.ToDatetime() - buckets[1].start.ToDatetime() == timedelta(minutes=10)
