"""SyncRuns, the server side of the per-task hot path.

One bidi stream per flow-run process. The server takes whatever messages
have already arrived (up to ``sync_batch_max_records`` records; it never
waits on a timer), writes them in one transaction with multi-row
statements, commits, then acks the highest sequence of the batch. A stream
the client cancels rolls its open transaction back as a whole, and resends
are harmless: task runs already there and states already written are
skipped, so a client that reconnects and resends everything unacked loses
nothing and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from weir.v1 import orchestration_pb2 as pb
from weir_kit.loops import FOREGROUND
from weir_kit.runtime import ServiceContext
from weir_orchestration import logs, states, task_runs
from weir_orchestration.policy import Decision, RunKind
from weir_orchestration.proto import parse_id
from weir_orchestration.settings import OrchestrationSettings

_END = None


def _records(msg: pb.SyncRunsRequest) -> int:
    return len(msg.create_task_runs) + len(msg.proposals) + len(msg.logs) or 1


async def sync_runs(
    svc: ServiceContext, settings: OrchestrationSettings, requests: AsyncIterator[pb.SyncRunsRequest]
) -> AsyncIterator[pb.SyncRunsResponse]:
    queue: asyncio.Queue[pb.SyncRunsRequest | None] = asyncio.Queue()
    # Messages received and not yet written: background loops of this process hold off meanwhile.
    held = 0

    async def read() -> None:
        nonlocal held
        try:
            async for msg in requests:
                queue.put_nowait(msg)
                held += 1
                FOREGROUND.enter()
        finally:
            queue.put_nowait(_END)

    reader = asyncio.create_task(read(), name="sync-runs-reader")
    try:
        ended = False
        while not ended:
            first = await queue.get()
            if first is _END:
                break
            batch, size = [first], _records(first)
            while size < settings.sync_batch_max_records and not queue.empty():
                msg = queue.get_nowait()
                if msg is _END:
                    ended = True
                    break
                batch.append(msg)
                size += _records(msg)
            try:
                response = await write_batch(svc, settings, batch)
            finally:
                held -= len(batch)
                FOREGROUND.leave(len(batch))
            yield response
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        FOREGROUND.leave(held)


async def write_batch(
    svc: ServiceContext, settings: OrchestrationSettings, batch: Sequence[pb.SyncRunsRequest]
) -> pb.SyncRunsResponse:
    """Write one batch in one transaction; the answer to send after commit."""
    now = svc.clock()
    rows, initial, seen = [], [], set()
    proposals: list[tuple[int, bool, states.Proposal]] = []
    log_records = []
    for msg in batch:
        for i, create in enumerate(msg.create_task_runs):
            row, state = task_runs.task_run_values(create, now, f"create_task_runs[{i}].")
            if row["id"] not in seen:
                seen.add(row["id"])
                rows.append(row)
                initial.append(state)
        for i, item in enumerate(msg.proposals):
            field = f"proposals[{i}]"
            run_id = parse_id(item.task_run_id, f"{field}.task_run_id")
            proposal = states.parse_proposal(run_id, item.proposal, now, f"{field}.proposal")
            proposals.append((msg.seq, item.wait_for_decision, proposal))
        log_records.extend(msg.logs)
    log_rows = logs.log_values(log_records, now, settings)
    async with svc.db.transaction() as session:
        inserted = await task_runs.insert_task_runs(session, svc, rows, initial, now)
        outcomes = await states.apply(session, svc, RunKind.TASK, [p for _, _, p in proposals], now, inserted.runs)
        await logs.insert_logs(session, svc, log_rows)
    response = pb.SyncRunsResponse(acked_seq=max(msg.seq for msg in batch))
    for (seq, wait, proposal), outcome in zip(proposals, outcomes, strict=True):
        if not wait and outcome.verdict.decision is Decision.ACCEPT:
            continue
        decision = pb.SyncDecision(seq=seq, task_run_id=proposal.run_id, result=states.result_to_pb(outcome.verdict))
        (response.decisions if wait else response.not_accepted).append(decision)
    return response
