"""State proposals over real gRPC: the policy's answers, history, events."""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta

import grpc
import pytest
from sqlalchemy import select

from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb
from weir_orchestration import flow_runs, states
from weir_orchestration.models import outbox
from weir_orchestration.policy import RunKind

from .helpers import expect_error, new_flow_run, new_task_run, set_flow_state, set_task_state, state, uid


async def history(orch, **which):
    return list((await orch.stub.ListStates(pb.ListStatesRequest(**which))).states)


async def test_lifecycle_accepted_and_duplicate_pending_rejected(orch):
    run = await new_flow_run(orch.stub)
    running = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    assert running.decision == pb.ACCEPT and running.state.type == common_pb2.RUNNING
    again = await set_flow_state(orch.stub, run.id, common_pb2.PENDING)
    assert again.decision == pb.REJECT
    assert again.reason == "run is already RUNNING" and again.rule == "prevent_duplicate_pending"
    assert again.state.id == running.state.id  # the run's state now
    done = await set_flow_state(orch.stub, run.id, common_pb2.COMPLETED, result_ref="file:///r")
    assert done.decision == pb.ACCEPT
    got = (await orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=run.id))).flow_run
    assert got.state.type == common_pb2.COMPLETED and got.run_count == 1
    assert got.start_time.seconds > 0 and got.end_time.seconds > 0 and got.total_run_time_seconds >= 0
    states = await history(orch, flow_run_id=run.id)
    assert [s.type for s in states] == [common_pb2.PENDING, common_pb2.RUNNING, common_pb2.COMPLETED]
    assert states[-1].details.result_ref == "file:///r"


async def test_second_pending_rejected_with_reason(orch):
    run = await new_flow_run(orch.stub)
    r = await set_flow_state(orch.stub, run.id, common_pb2.PENDING)
    assert r.decision == pb.REJECT and r.reason == "run is already PENDING"
    assert len(await history(orch, flow_run_id=run.id)) == 1


async def test_terminal_state_is_final_but_a_flow_run_can_be_rerun(orch):
    run = await new_flow_run(orch.stub)
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    await set_flow_state(orch.stub, run.id, common_pb2.COMPLETED)
    r = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    assert r.decision == pb.REJECT and "COMPLETED" in r.reason and "RUNNING" in r.reason
    rerun = await set_flow_state(orch.stub, run.id, common_pb2.SCHEDULED)
    assert rerun.decision == pb.ACCEPT


async def test_failure_with_retries_becomes_awaiting_retry(orch):
    run = await new_flow_run(orch.stub, policy=pb.RunPolicy(retries=1, retry_delay_seconds=[30]))
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    r = await set_flow_state(orch.stub, run.id, common_pb2.FAILED, name="Failed")
    assert r.decision == pb.REJECT and r.rule == "enforce_retries"
    assert r.state.type == common_pb2.SCHEDULED and r.state.name == "AwaitingRetry"
    assert r.state.details.retry_count == 1
    delay = r.state.details.scheduled_time.ToDatetime() - r.state.timestamp.ToDatetime()
    assert timedelta(seconds=29) < delay <= timedelta(seconds=31)
    # Too early to start again: WAIT with the remaining delay.
    w = await set_flow_state(orch.stub, run.id, common_pb2.PENDING)
    assert w.decision == pb.WAIT and 28 < w.delay_seconds <= 30
    orch.clock.advance(31)
    assert (await set_flow_state(orch.stub, run.id, common_pb2.PENDING)).decision == pb.ACCEPT
    assert (await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)).decision == pb.ACCEPT
    final = await set_flow_state(orch.stub, run.id, common_pb2.FAILED)
    assert final.decision == pb.ACCEPT and final.state.type == common_pb2.FAILED  # no retries left
    got = (await orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=run.id))).flow_run
    assert got.run_count == 2


async def test_wait_for_future_scheduled_time(orch):
    when = orch.clock() + timedelta(seconds=120)
    run = await new_flow_run(orch.stub, state=state(common_pb2.SCHEDULED, scheduled_time=when))
    r = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    assert r.decision == pb.WAIT and 118 < r.delay_seconds <= 120
    assert r.state.type == common_pb2.SCHEDULED  # unchanged
    orch.clock.advance(121)
    r = await set_flow_state(orch.stub, run.id, common_pb2.PENDING)
    assert r.decision == pb.ACCEPT
    assert r.state.details.scheduled_time.ToDatetime().replace(microsecond=0) == when.replace(
        tzinfo=None, microsecond=0
    )


async def test_abort_on_cancelled(orch):
    run = await new_flow_run(orch.stub)
    assert (await set_flow_state(orch.stub, run.id, common_pb2.CANCELLED)).decision == pb.ACCEPT
    r = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    assert r.decision == pb.ABORT and "CANCELLED" in r.reason


async def test_task_run_aborted_when_its_flow_run_is_cancelling(orch):
    run = await new_flow_run(orch.stub)
    task = await new_task_run(orch.stub, run.id)
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    await set_flow_state(orch.stub, run.id, common_pb2.CANCELLING)
    r = await set_task_state(orch.stub, task.id, common_pb2.RUNNING)
    assert r.decision == pb.ABORT and r.rule == "abort_when_cancel_requested"


async def test_idempotency_key_returns_first_answer(orch):
    run = await new_flow_run(orch.stub)
    first = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, idempotency_key="claim-1")
    second = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, idempotency_key="claim-1")
    assert first.decision == second.decision == pb.ACCEPT
    assert second.state.id == first.state.id
    other = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, idempotency_key="claim-2")
    assert other.decision == pb.REJECT
    assert len(await history(orch, flow_run_id=run.id)) == 2


async def test_resent_state_id_is_not_written_twice(orch):
    run = await new_flow_run(orch.stub)
    sid = uid()
    a = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, state_id=sid)
    b = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, state_id=sid)
    assert a.decision == b.decision == pb.ACCEPT and a.state.id == b.state.id == sid
    assert len(await history(orch, flow_run_id=run.id)) == 2


async def test_expected_state_id(orch):
    run = await new_flow_run(orch.stub)
    stale = uid()
    r = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, expected_state_id=stale)
    assert r.decision == pb.ABORT and "PENDING" in r.reason and run.state.id in r.reason
    ok = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, expected_state_id=run.state.id)
    assert ok.decision == pb.ACCEPT


async def test_force_bypasses_policy_and_is_recorded(orch):
    run = await new_flow_run(orch.stub)
    await set_flow_state(orch.stub, run.id, common_pb2.COMPLETED)
    r = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, force=True)
    assert r.decision == pb.ACCEPT and r.rule == "force"
    assert [s.type for s in await history(orch, flow_run_id=run.id)][-1] == common_pb2.RUNNING


async def test_cache_hit_answers_cached(orch):
    run = await new_flow_run(orch.stub)
    first = await new_task_run(orch.stub, run.id, cache_key="inputs-abc")
    await set_task_state(orch.stub, first.id, common_pb2.RUNNING)
    await set_task_state(orch.stub, first.id, common_pb2.COMPLETED, result_ref="file:///result-1")
    second = await new_task_run(orch.stub, run.id, cache_key="inputs-abc")
    r = await set_task_state(orch.stub, second.id, common_pb2.RUNNING)
    assert r.decision == pb.REJECT and r.rule == "cache_lookup"
    assert r.state.type == common_pb2.COMPLETED and r.state.name == "Cached"
    assert r.state.details.result_ref == "file:///result-1"
    assert r.state.details.cached_from_task_run_id == first.id
    got = (await orch.stub.GetTaskRun(pb.GetTaskRunRequest(id=second.id))).task_run
    assert got.state.name == "Cached" and got.run_count == 0
    # refresh_cache runs it anyway; an expired entry is no hit.
    third = await new_task_run(orch.stub, run.id, cache_key="inputs-abc")
    assert (await set_task_state(orch.stub, third.id, common_pb2.RUNNING, refresh_cache=True)).decision == pb.ACCEPT
    other = await new_task_run(orch.stub, run.id, cache_key="inputs-exp")
    await set_task_state(orch.stub, other.id, common_pb2.RUNNING)
    past = orch.clock() - timedelta(seconds=1)
    await set_task_state(orch.stub, other.id, common_pb2.COMPLETED, cache_expiration=past)
    late = await new_task_run(orch.stub, run.id, cache_key="inputs-exp")
    assert (await set_task_state(orch.stub, late.id, common_pb2.RUNNING)).decision == pb.ACCEPT


async def test_state_changes_emit_events_into_the_outbox(orch):
    run = await new_flow_run(orch.stub, tags=["blue"])
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    async with orch.db.read() as session:
        rows = (await session.execute(select(outbox.c.subject, outbox.c.data).order_by(outbox.c.seq))).all()
    names = [common_pb2.Event.FromString(r.data).event for r in rows]
    assert names == ["weir.flow.created", "weir.flow-run.created", "weir.flow-run.Pending", "weir.flow-run.Running"]
    event = common_pb2.Event.FromString(rows[-1].data)
    labels = event.resource.labels
    assert labels["weir.resource.id"] == f"weir.flow-run.{run.id}"
    assert labels["weir.state-type"] == "RUNNING" and labels["weir.state-name"] == "Running"
    roles = {r.labels["weir.resource.role"]: r.labels["weir.resource.id"] for r in event.related}
    assert roles == {"flow": f"weir.flow.{run.flow_id}", "tag": "weir.tag.blue"}
    assert event.payload["intended"]["from"] == "PENDING" and event.payload["intended"]["to"] == "RUNNING"
    assert event.payload["validated_state"]["type"] == "RUNNING"
    assert rows[-1].subject == "weir.events.weir.flow-run.Running"


async def test_rejected_proposal_emits_no_event(orch):
    run = await new_flow_run(orch.stub)
    before = await orch.count("outbox")
    await set_flow_state(orch.stub, run.id, common_pb2.PENDING)
    assert await orch.count("outbox") == before


async def test_history_pages_oldest_first(orch):
    run = await new_flow_run(orch.stub)
    for t in (common_pb2.RUNNING, common_pb2.COMPLETED, common_pb2.SCHEDULED, common_pb2.PENDING):
        assert (await set_flow_state(orch.stub, run.id, t)).decision == pb.ACCEPT
    seen, token = [], ""
    while True:
        resp = await orch.stub.ListStates(
            pb.ListStatesRequest(flow_run_id=run.id, page=common_pb2.PageRequest(page_size=2, page_token=token))
        )
        seen += [s.type for s in resp.states]
        token = resp.next_page_token
        if not token:
            break
    expected = [common_pb2.PENDING, common_pb2.RUNNING, common_pb2.COMPLETED, common_pb2.SCHEDULED, common_pb2.PENDING]
    assert seen == expected


async def test_proposal_for_unknown_run_is_not_found(orch):
    missing = uid()
    await expect_error(
        orch.stub.SetFlowRunState(
            pb.SetFlowRunStateRequest(flow_run_id=missing, proposal=pb.StateProposal(state=state(common_pb2.RUNNING)))
        ),
        grpc.StatusCode.NOT_FOUND,
        missing,
    )
    await expect_error(
        orch.stub.ListStates(pb.ListStatesRequest(task_run_id=missing)), grpc.StatusCode.NOT_FOUND, missing
    )


async def test_concurrent_proposals_to_one_run_write_one_state(orch):
    run = await new_flow_run(orch.stub)
    results = await asyncio.gather(*(set_flow_state(orch.stub, run.id, common_pb2.RUNNING) for _ in range(12)))
    assert [r.decision for r in results].count(pb.ACCEPT) == 1
    assert [s.type for s in await history(orch, flow_run_id=run.id)] == [common_pb2.PENDING, common_pb2.RUNNING]
    got = (await orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=run.id))).flow_run
    assert got.run_count == 1


def count_loads(monkeypatch) -> list[bool]:
    """Every read of runs by a proposal, by whether it locked them."""
    real_load, locks = states.load_runs, []

    async def counted(session, kind, ids, *, lock):
        locks.append(lock)
        return await real_load(session, kind, ids, lock=lock)

    monkeypatch.setattr(states, "load_runs", counted)
    return locks


async def test_proposals_on_a_flow_run_this_replica_wrote_do_not_read_it_on_postgres(orch, monkeypatch):
    run = await new_flow_run(orch.stub)
    loads = count_loads(monkeypatch)
    running = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, idempotency_key="k-run")
    done = await set_flow_state(orch.stub, run.id, common_pb2.COMPLETED, idempotency_key="k-done")
    assert running.decision == done.decision == pb.ACCEPT
    # A resend after a lost answer gets the first answer back, from what this replica wrote.
    resent = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING, idempotency_key="k-run")
    assert resent.decision == pb.ACCEPT and resent.state.id == running.state.id
    assert resent.rule == "idempotency_key"
    if orch.backend == "postgres":
        assert loads == []  # created here, then every state written here: never read back
        assert len(orch.runtime.servicer.runs) == 1
    else:  # SQLite decides under its one writer's lock and reads inline: nothing is cached
        assert loads == [False, False, False]
        assert len(orch.runtime.servicer.runs) == 0
    got = (await orch.stub.GetFlowRun(pb.GetFlowRunRequest(id=run.id))).flow_run
    assert got.state.id == done.state.id and got.run_count == 1
    history_types = [s.type for s in await history(orch, flow_run_id=run.id)]
    assert history_types == [common_pb2.PENDING, common_pb2.RUNNING, common_pb2.COMPLETED]


async def test_a_cached_flow_run_changed_by_another_replica_is_decided_from_the_database(orch, monkeypatch):
    if orch.backend != "postgres":
        pytest.skip("SQLite decides every proposal under its write lock: it keeps no run cache")
    svc = orch.runtime.svc
    # Another replica: the same database, its own (here: no) cache.
    run = await new_flow_run(orch.stub)  # this replica caches it PENDING
    other = pb.StateProposal(state=state(common_pb2.RUNNING))
    assert (await states.set_state(svc, RunKind.FLOW, run.id, other)).decision == pb.ACCEPT
    loads = count_loads(monkeypatch)
    # The cache says PENDING, so RUNNING looks fine: the write finds the run changed.
    again = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    assert again.decision == pb.REJECT and again.rule == "prevent_duplicate_running"
    assert loads == [True]  # decided again from the database, locked
    # Now cached RUNNING; the other replica completes it. A decision on a cached run that
    # writes nothing (here a duplicate RUNNING) is not trusted either.
    done = pb.StateProposal(state=state(common_pb2.COMPLETED))
    assert (await states.set_state(svc, RunKind.FLOW, run.id, done)).decision == pb.ACCEPT
    loads.clear()
    late = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    assert late.decision == pb.REJECT and late.rule == "prevent_leaving_terminal"
    assert late.state.type == common_pb2.COMPLETED
    assert loads == [True]
    history_types = [s.type for s in await history(orch, flow_run_id=run.id)]
    assert history_types == [common_pb2.PENDING, common_pb2.RUNNING, common_pb2.COMPLETED]
    # Deleted by the other replica: the cached run is not found either.
    await orch.stub.SetFlowRunState(pb.SetFlowRunStateRequest(flow_run_id=run.id, proposal=other))  # cache it again
    await flow_runs.delete_flow_run(svc, pb.DeleteFlowRunRequest(id=run.id))
    await expect_error(set_flow_state(orch.stub, run.id, common_pb2.CANCELLED, force=True), grpc.StatusCode.NOT_FOUND)


async def test_a_state_id_of_another_run_is_rejected_with_the_runs_state_as_stored(orch) -> None:
    svc = orch.runtime.svc
    run, other_run = await new_flow_run(orch.stub), await new_flow_run(orch.stub)  # both cached PENDING (Postgres)
    taken = uid()
    assert (await set_flow_state(orch.stub, other_run.id, common_pb2.RUNNING, state_id=taken)).decision == pb.ACCEPT
    # Another replica moves the run on; this replica's cache still says PENDING.
    moved = pb.StateProposal(state=state(common_pb2.RUNNING))
    assert (await states.set_state(svc, RunKind.FLOW, run.id, moved)).decision == pb.ACCEPT
    answer = await set_flow_state(orch.stub, run.id, common_pb2.COMPLETED, state_id=taken)
    assert answer.decision == pb.REJECT and answer.rule == "state_id"
    assert answer.state.type == common_pb2.RUNNING  # the run as stored, not as cached


async def test_an_optimistic_proposal_that_lost_a_race_is_decided_again_under_the_lock(orch, monkeypatch):
    if orch.backend != "postgres":
        pytest.skip("SQLite has one writer at a time, so its proposals are never optimistic")
    run = await new_flow_run(orch.stub)
    svc = orch.runtime.svc
    async with svc.db.transaction() as session:
        before = await states.load_runs(session, RunKind.FLOW, [run.id], lock=False)  # PENDING
    assert (await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)).decision == pb.ACCEPT

    real_load, locks = states.load_runs, []

    async def stale_first(session, kind, ids, *, lock):  # the next proposal reads what was there before
        locks.append(lock)
        if len(locks) == 1:
            return copy.deepcopy(before)
        return await real_load(session, kind, ids, lock=lock)

    monkeypatch.setattr(states, "load_runs", stale_first)
    orch.runtime.servicer.runs.drop([run.id])  # as on a replica that did not write the run
    again = await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    assert locks == [False, True]  # read without a lock, write missed, read again locked
    assert again.decision == pb.REJECT and again.rule == "prevent_duplicate_running"
    assert [s.type for s in await history(orch, flow_run_id=run.id)] == [common_pb2.PENDING, common_pb2.RUNNING]
