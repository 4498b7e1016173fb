"""SyncRuns: batched task-run creations, proposals and logs over one stream."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import grpc
from sqlalchemy import select

from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb
from weir_kit.loops import FOREGROUND
from weir_kit.outbox import BUNDLE_SUBJECT, OutboxRelay
from weir_orchestration.models import outbox

from .helpers import new_flow_run, proposal, uid


def task_messages(flow_run_id: str, count: int, per_message: int, first_seq: int = 1) -> list[pb.SyncRunsRequest]:
    """Messages that create ``count`` task runs and take each PENDING -> RUNNING -> COMPLETED."""
    out = []
    seq = first_seq
    for start in range(0, count, per_message):
        ids = [uid() for _ in range(start, min(start + per_message, count))]
        creates = [
            pb.CreateTaskRunRequest(
                id=task_id,
                flow_run_id=flow_run_id,
                task_key="step",
                dynamic_key=f"{start + i}",
                state=common_pb2.State(id=uid(), type=common_pb2.PENDING),
            )
            for i, task_id in enumerate(ids)
        ]
        out.append(pb.SyncRunsRequest(seq=seq, create_task_runs=creates))
        seq += 1
        for state_type in (common_pb2.RUNNING, common_pb2.COMPLETED):
            proposals = [
                pb.TaskRunStateProposal(task_run_id=task_id, proposal=proposal(state_type, state_id=uid()))
                for task_id in ids
            ]
            logs = [pb.LogRecord(id=uid(), flow_run_id=flow_run_id, task_run_id=t, message="hi") for t in ids]
            out.append(
                pb.SyncRunsRequest(seq=seq, proposals=proposals, logs=logs if state_type == common_pb2.RUNNING else [])
            )
            seq += 1
    return out


async def send_all(stub, messages) -> list[pb.SyncRunsResponse]:
    call = stub.SyncRuns()
    for msg in messages:
        await call.write(msg)
    await call.done_writing()
    return [resp async for resp in call]


async def test_ingest_one_thousand_task_runs(orch):
    run = await new_flow_run(orch.stub)
    messages = task_messages(run.id, 1000, 100)
    responses = await send_all(orch.stub, messages)
    assert responses[-1].acked_seq == messages[-1].seq
    assert not FOREGROUND.busy  # every message written: background loops may run again
    assert all(not r.not_accepted and not r.decisions for r in responses)
    assert [r.acked_seq for r in responses] == sorted(r.acked_seq for r in responses)
    assert await orch.count("task_runs") == 1000
    assert await orch.count("run_states") == 1 + 3000
    assert await orch.count("logs") == 1000
    done = await orch.stub.ListTaskRuns(
        pb.ListTaskRunsRequest(
            filter=pb.TaskRunFilter(flow_run_ids=[run.id], state_types=[common_pb2.COMPLETED]),
            page=common_pb2.PageRequest(page_size=1000),
        )
    )
    assert len(done.task_runs) == 1000
    assert all(t.run_count == 1 and t.end_time.seconds > 0 for t in done.task_runs)


async def test_flush_acks_an_empty_message(orch):
    call = orch.stub.SyncRuns()
    await call.write(pb.SyncRunsRequest(seq=7, flush=True))
    resp = await call.read()
    assert resp.acked_seq == 7
    call.cancel()


async def test_dropped_stream_resent_loses_nothing_and_duplicates_nothing(orch):
    run = await new_flow_run(orch.stub)
    messages = task_messages(run.id, 600, 20)  # 90 messages
    call = orch.stub.SyncRuns()
    acked = 0
    for msg in messages[:60]:
        await call.write(msg)
    while acked < 20:
        acked = (await call.read()).acked_seq
    call.cancel()  # mid-way: some sent messages may be unread, mid-batch or committed without an ack
    await asyncio.sleep(0.1)
    for _ in range(100):  # the dropped stream's unwritten messages no longer hold background loops back
        if not FOREGROUND.busy:
            break
        await asyncio.sleep(0.05)
    assert not FOREGROUND.busy

    # Reconnect and resend everything unacked, plus a few already acked.
    resend = [m for m in messages if m.seq > acked - 5]
    responses = await send_all(orch.stub, resend)
    assert responses[-1].acked_seq == messages[-1].seq
    assert all(not r.not_accepted for r in responses)
    assert await orch.count("task_runs") == 600
    assert await orch.count("run_states") == 1 + 3 * 600
    assert await orch.count("logs") == 600
    completed = await orch.stub.ListTaskRuns(
        pb.ListTaskRunsRequest(
            filter=pb.TaskRunFilter(flow_run_ids=[run.id], state_types=[common_pb2.COMPLETED]),
            page=common_pb2.PageRequest(page_size=1000),
        )
    )
    assert len(completed.task_runs) == 600
    assert {t.run_count for t in completed.task_runs} == {1}
    states = await orch.stub.ListStates(pb.ListStatesRequest(task_run_id=completed.task_runs[0].id))
    assert [s.type for s in states.states] == [common_pb2.PENDING, common_pb2.RUNNING, common_pb2.COMPLETED]


async def test_decisions_and_not_accepted(orch):
    run = await new_flow_run(orch.stub)
    cached_id, hit_id, dup_id = uid(), uid(), uid()
    creates = [
        pb.CreateTaskRunRequest(id=cached_id, flow_run_id=run.id, task_key="a", cache_key="ck"),
        pb.CreateTaskRunRequest(id=hit_id, flow_run_id=run.id, task_key="b", cache_key="ck"),
        pb.CreateTaskRunRequest(id=dup_id, flow_run_id=run.id, task_key="c"),
    ]
    first = [
        pb.TaskRunStateProposal(task_run_id=cached_id, proposal=proposal(common_pb2.RUNNING)),
        pb.TaskRunStateProposal(task_run_id=cached_id, proposal=proposal(common_pb2.COMPLETED, result_ref="r://1")),
    ]
    call = orch.stub.SyncRuns()
    await call.write(pb.SyncRunsRequest(seq=1, create_task_runs=creates, proposals=first))
    assert (await call.read()).acked_seq == 1
    second = [
        pb.TaskRunStateProposal(task_run_id=hit_id, proposal=proposal(common_pb2.RUNNING), wait_for_decision=True),
        pb.TaskRunStateProposal(task_run_id=dup_id, proposal=proposal(common_pb2.PENDING)),
        pb.TaskRunStateProposal(task_run_id=uid(), proposal=proposal(common_pb2.RUNNING)),
    ]
    await call.write(pb.SyncRunsRequest(seq=2, proposals=second))
    resp = await call.read()
    await call.done_writing()
    assert resp.acked_seq == 2
    (decision,) = resp.decisions
    assert decision.seq == 2 and decision.task_run_id == hit_id
    assert decision.result.decision == pb.REJECT and decision.result.state.name == "Cached"
    assert decision.result.state.details.result_ref == "r://1"
    refused = {d.task_run_id: d.result for d in resp.not_accepted}
    assert refused[dup_id].decision == pb.REJECT and "already PENDING" in refused[dup_id].reason
    assert len(refused) == 2  # and the unknown task run
    assert any(r.decision == pb.ABORT and "not found" in r.reason for r in refused.values())


async def test_invalid_record_fails_the_stream_with_invalid_argument(orch):
    call = orch.stub.SyncRuns()
    bad = pb.TaskRunStateProposal(task_run_id="nope", proposal=proposal(common_pb2.RUNNING))
    await call.write(pb.SyncRunsRequest(seq=1, proposals=[bad]))
    try:
        await call.read()
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "task_run_id" in (err.details() or "")
    else:
        raise AssertionError("expected INVALID_ARGUMENT")


async def test_messages_before_an_invalid_one_are_written_and_acked(orch):
    run = await new_flow_run(orch.stub)
    good = task_messages(run.id, 20, 10)[:4]  # seqs 1-4: 10 creates, their proposals, 10 more creates
    bad = pb.SyncRunsRequest(seq=5, logs=[pb.LogRecord(message="no run named")])
    call = orch.stub.SyncRuns()
    for msg in [*good, bad]:
        await call.write(msg)  # all of them arrive before the server ends the stream
    acked = 0
    try:
        async for reply in call:
            acked = max(acked, reply.acked_seq)
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "logs[0]" in (err.details() or "")
    else:
        raise AssertionError("expected INVALID_ARGUMENT")
    assert acked == 4
    assert await orch.count("task_runs") == 20
    assert not FOREGROUND.busy


async def test_a_sync_batch_is_one_bundle_row_and_every_event_is_published_with_its_own_id(orch):
    run = await new_flow_run(orch.stub)  # (this module keeps the relay off: the rows stay put)
    await send_all(orch.stub, task_messages(run.id, 50, 50))  # 50 task runs, 3 states each, one message per state
    async with orch.db.read() as session:
        rows = (await session.execute(select(outbox.c.subject, outbox.c.data))).all()
    bundles = [r for r in rows if r.subject == BUNDLE_SUBJECT]
    assert bundles and len(rows) < 10  # not 200 rows
    packed = [p for r in bundles for p in common_pb2.EventBundle.FromString(r.data).packed]
    expected = {p.id: common_pb2.Event.FromString(p.data).event for p in packed}
    assert all(p.subject == f"weir.events.{expected[p.id]}" for p in packed)
    assert len(expected) == 50 * 4  # created + Pending + Running + Completed per task run
    assert await orch.outbox.pending() == 3 + 200  # and the flow, the flow run and its Pending state

    sub = await orch.nats.js.subscribe("weir.events.weir.task-run.>", ordered_consumer=True)
    relay = OutboxRelay(orch.outbox, orch.nats, orch.settings)
    relay.start()
    got: dict[str, tuple[str, str]] = {}
    async with asyncio.timeout(10):
        while not set(expected) <= set(got):
            msg = await sub.next_msg(timeout=5)
            event = common_pb2.Event.FromString(msg.data)
            got[event.id] = (event.event, msg.subject)
    await sub.unsubscribe()
    for event_id, name in expected.items():
        assert got[event_id] == (name, f"weir.events.{name}")
    async with asyncio.timeout(10):  # and the bundles are gone
        while await orch.outbox.pending():
            await asyncio.sleep(0.05)
    await relay.stop()


async def test_a_bundle_of_whole_events_written_by_an_older_version_still_relays(orch):
    events = [common_pb2.Event(id=str(uuid.uuid4()), event=f"weir.task-run.{n}") for n in ("created", "Pending")]
    legacy = SimpleNamespace(subject=BUNDLE_SUBJECT, data=common_pb2.EventBundle(events=events).SerializeToString())
    messages = orch.outbox.messages([legacy])
    assert [(subject, event_id) for subject, _, event_id in messages] == [
        (f"weir.events.{e.event}", e.id) for e in events
    ]
    assert [common_pb2.Event.FromString(data) for _, data, _ in messages] == events


async def test_nul_characters_in_messages_and_logs_do_not_fail_the_batch(orch):
    # A task's exception text or printed output can carry NUL, which Postgres text refuses: the
    # batch failed with INTERNAL and the client resent it forever. Both backends store U+FFFD.
    run = await new_flow_run(orch.stub)
    task_id = uid()
    create = pb.CreateTaskRunRequest(
        id=task_id, flow_run_id=run.id, task_key="nul", state=common_pb2.State(id=uid(), type=common_pb2.PENDING)
    )
    failed = common_pb2.State(id=uid(), type=common_pb2.FAILED, message="binary \x00 junk")
    messages = [
        pb.SyncRunsRequest(seq=1, create_task_runs=[create]),
        pb.SyncRunsRequest(
            seq=2,
            proposals=[pb.TaskRunStateProposal(task_run_id=task_id, proposal=pb.StateProposal(state=failed))],
            logs=[pb.LogRecord(id=uid(), flow_run_id=run.id, task_run_id=task_id, name="x\x00", message="a\x00b")],
        ),
    ]
    responses = await send_all(orch.stub, messages)
    assert responses[-1].acked_seq == 2
    got = (await orch.stub.GetTaskRun(pb.GetTaskRunRequest(id=task_id))).task_run
    assert got.state.type == common_pb2.FAILED
    assert got.state.message == "binary \ufffd junk"
    logs = await orch.stub.ListLogs(pb.ListLogsRequest(filter=pb.LogFilter(task_run_id=task_id)))
    assert [(r.name, r.message) for r in logs.logs] == [("x\ufffd", "a\ufffdb")]


async def test_a_first_state_whose_id_another_run_holds_is_not_written(orch):
    run = await new_flow_run(orch.stub)
    taken = uid()

    def create(task_id: str, key: str, state_id: str) -> pb.CreateTaskRunRequest:
        return pb.CreateTaskRunRequest(
            id=task_id,
            flow_run_id=run.id,
            task_key="step",
            dynamic_key=key,
            state=common_pb2.State(id=state_id, type=common_pb2.PENDING),
        )

    first, second, third = uid(), uid(), uid()
    await send_all(orch.stub, [pb.SyncRunsRequest(seq=1, create_task_runs=[create(first, "a", taken)])])
    # A later batch: one run reuses the taken state id, one has its own; both runs are created.
    await send_all(
        orch.stub,
        [pb.SyncRunsRequest(seq=2, create_task_runs=[create(second, "b", taken), create(third, "c", uid())])],
    )
    assert await orch.count("task_runs") == 3
    held = await orch.stub.GetTaskRun(pb.GetTaskRunRequest(id=second))
    assert not held.task_run.HasField("state") or not held.task_run.state.id
    owner = await orch.stub.ListStates(pb.ListStatesRequest(task_run_id=first))
    assert [s.id for s in owner.states] == [taken]
    others = await orch.stub.ListStates(pb.ListStatesRequest(task_run_id=third))
    assert [s.type for s in others.states] == [common_pb2.PENDING]
    assert not (await orch.stub.ListStates(pb.ListStatesRequest(task_run_id=second))).states


async def test_a_name_or_key_the_database_cannot_hold_ends_the_stream_with_invalid_argument(orch):
    # Postgres refused a 300-character task name or a 65-character state name, and the batch failed
    # with INTERNAL, which the SDK resends forever. Both backends now refuse it up front.
    run = await new_flow_run(orch.stub)
    cases = [
        (pb.CreateTaskRunRequest(flow_run_id=run.id, task_key="k", name="n" * 300), "create_task_runs[0].name"),
        (pb.CreateTaskRunRequest(flow_run_id=run.id, task_key="k\x00"), "create_task_runs[0].task_key"),
        (
            pb.CreateTaskRunRequest(flow_run_id=run.id, task_key="k", dynamic_key="d" * 256),
            "create_task_runs[0].dynamic_key",
        ),
        (
            pb.CreateTaskRunRequest(
                flow_run_id=run.id, task_key="k", state=common_pb2.State(type=common_pb2.PENDING, name="s" * 65)
            ),
            "create_task_runs[0].state.name",
        ),
    ]
    for create, field in cases:
        call = orch.stub.SyncRuns()
        await call.write(pb.SyncRunsRequest(seq=1, create_task_runs=[create]))
        try:
            await call.read()
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
            assert field in (err.details() or ""), (field, err.details())
        else:
            raise AssertionError(f"expected INVALID_ARGUMENT for {field}")
    assert await orch.count("task_runs") == 0
