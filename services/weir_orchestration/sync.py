"""SyncRuns, the server side of the per-task hot path.

One bidi stream per flow-run process. The server takes whatever messages
have already arrived (up to ``sync_batch_max_records`` records; it never
waits on a timer), writes them in one transaction with multi-row
statements, commits, then acks the highest sequence of the batch. A stream
the client cancels rolls its open transaction back as a whole, and resends
are harmless: task runs already there and states already written are
skipped, so a client that reconnects and resends everything unacked loses
nothing and duplicates nothing.

Each message is parsed and validated by the task that reads the stream, as
it arrives: while one batch waits on the database, the next one's protobuf
parsing and row building (a third of a task run's CPU) runs in that wait
instead of after it. A message that fails validation ends the stream with
its error once every message before it has been written and acked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from weir.v1 import orchestration_pb2 as pb
from weir_kit.loops import FOREGROUND
from weir_kit.runtime import ServiceContext
from weir_orchestration import logs, states, task_runs
from weir_orchestration.policy import Decision, RunKind, State
from weir_orchestration.proto import parse_id
from weir_orchestration.settings import OrchestrationSettings

_END = None


@dataclass
class Parsed:
    """One SyncRuns message, validated and turned into rows (or the error that refused it)."""

    seq: int
    records: int
    task_runs: list[tuple[dict[str, Any], State]] = field(default_factory=list)
    #: (seq, wait_for_decision, proposal)
    proposals: list[tuple[int, bool, states.Proposal]] = field(default_factory=list)
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None


def parse_message(svc: ServiceContext, settings: OrchestrationSettings, msg: pb.SyncRunsRequest) -> Parsed:
    out = Parsed(msg.seq, len(msg.create_task_runs) + len(msg.proposals) + len(msg.logs) or 1)
    now = svc.clock()
    try:
        for i, create in enumerate(msg.create_task_runs):
            out.task_runs.append(task_runs.task_run_values(create, now, f"create_task_runs[{i}]."))
        for i, item in enumerate(msg.proposals):
            where = f"proposals[{i}]"
            run_id = parse_id(item.task_run_id, f"{where}.task_run_id")
            proposal = states.parse_proposal(run_id, item.proposal, now, f"{where}.proposal")
            out.proposals.append((msg.seq, item.wait_for_decision, proposal))
        out.log_rows = logs.log_values(msg.logs, now, settings)
    except Exception as exc:  # raised in order, after the messages before it are written
        out.error = exc
    return out


async def sync_runs(
    svc: ServiceContext, settings: OrchestrationSettings, requests: AsyncIterator[pb.SyncRunsRequest]
) -> AsyncIterator[pb.SyncRunsResponse]:
    queue: asyncio.Queue[Parsed | None] = asyncio.Queue()
    # Messages received and not yet written: background loops of this process hold off meanwhile.
    held = 0

    async def read() -> None:
        nonlocal held
        try:
            async for msg in requests:
                held += 1
                FOREGROUND.enter()
                queue.put_nowait(parse_message(svc, settings, msg))
        finally:
            queue.put_nowait(_END)

    reader = asyncio.create_task(read(), name="sync-runs-reader")
    try:
        refused: Exception | None = None
        while refused is None:
            first = await queue.get()
            if first is _END:
                break
            batch: list[Parsed] = []
            size, ended = 0, False
            item: Parsed | None = first
            while item is not None:
                if item.error is not None:
                    refused = item.error
                    held -= 1
                    FOREGROUND.leave()
                    break
                batch.append(item)
                size += item.records
                if size >= settings.sync_batch_max_records or queue.empty():
                    break
                item = queue.get_nowait()
                ended = item is None
            if batch:
                try:
                    response = await write_batch(svc, batch)
                finally:
                    held -= len(batch)
                    FOREGROUND.leave(len(batch))
                yield response
            if ended:
                break
        if refused is not None:
            raise refused
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        FOREGROUND.leave(held)


async def write_batch(svc: ServiceContext, batch: Sequence[Parsed]) -> pb.SyncRunsResponse:
    """Write one batch in one transaction; the answer to send after commit."""
    now = svc.clock()
    rows, initial, seen = [], [], set()
    proposals: list[tuple[int, bool, states.Proposal]] = []
    log_rows: list[dict[str, Any]] = []
    for parsed in batch:
        for row, state in parsed.task_runs:
            if row["id"] not in seen:
                seen.add(row["id"])
                rows.append(row)
                initial.append(state)
        proposals.extend(parsed.proposals)
        log_rows.extend(parsed.log_rows)
    async with svc.db.transaction() as session:
        inserted = await task_runs.insert_task_runs(session, svc, rows, initial, now)
        outcomes = await states.apply(session, svc, RunKind.TASK, [p for _, _, p in proposals], now, inserted.runs)
        await logs.insert_logs(session, svc, log_rows)
    response = pb.SyncRunsResponse(acked_seq=max(parsed.seq for parsed in batch))
    for (seq, wait, proposal), outcome in zip(proposals, outcomes, strict=True):
        if not wait and outcome.verdict.decision is Decision.ACCEPT:
            continue
        decision = pb.SyncDecision(seq=seq, task_run_id=proposal.run_id, result=states.result_to_pb(outcome.verdict))
        (response.decisions if wait else response.not_accepted).append(decision)
    return response
