"""One computation per cache key when two transactions decide at the same moment (two SyncRuns
streams, two processes, two replicas): the second waits for the first's commit and answers WAIT."""

from __future__ import annotations

import asyncio

from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb
from weir_orchestration import states
from weir_orchestration.cache_keys import BUCKETS, buckets
from weir_orchestration.policy import RunKind

from .helpers import new_flow_run, new_task_run, proposal, set_flow_state, set_task_state, state, uid


async def test_a_key_held_by_an_uncommitted_transaction_makes_the_other_wait(orch):
    run = await new_flow_run(orch.stub)
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    key = f"inputs-{uid()}"
    first = await new_task_run(orch.stub, run.id, cache_key=key)
    second = await new_task_run(orch.stub, run.id, cache_key=key)
    svc = orch.runtime.svc
    async with svc.db.transaction() as session:
        now = svc.clock()
        proposal = states.parse_proposal(first.id, pb.StateProposal(state=state(common_pb2.RUNNING)), now)
        (outcome,) = await states.apply(session, svc, RunKind.TASK, [proposal], now)
        assert outcome.verdict.decision.name == "ACCEPT"
        # The other proposal arrives while the first is decided but not committed ...
        other = asyncio.create_task(set_task_state(orch.stub, second.id, common_pb2.RUNNING))
        await asyncio.sleep(0.3)  # ... and gets as far as it can (on Postgres: the key's lock)
        assert not other.done()
    answer = await other
    assert answer.decision == pb.WAIT and answer.rule == "cache_lookup"


def test_keys_fold_into_sorted_buckets() -> None:
    ids = buckets([f"k{i}" for i in range(5000)] + [""])
    assert ids == sorted(ids) and len(ids) <= BUCKETS and all(0 <= b < BUCKETS for b in ids)
    assert buckets(["a", "a"]) == buckets(["a"])


async def _one_message(orch, proposals: list[pb.TaskRunStateProposal]) -> pb.SyncRunsResponse:
    call = orch.stub.SyncRuns()
    await call.write(pb.SyncRunsRequest(seq=1, proposals=proposals))
    answer = await call.read()
    await call.done_writing()
    assert answer.acked_seq == 1
    return answer


async def _holder_and_waiter(orch) -> tuple[str, str]:
    """A task run RUNNING with a key, and another with the same key that has not started."""
    run = await new_flow_run(orch.stub)
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    key = f"inputs-{uid()}"
    holder = await new_task_run(orch.stub, run.id, cache_key=key)
    waiter = await new_task_run(orch.stub, run.id, cache_key=key)
    assert (await set_task_state(orch.stub, holder.id, common_pb2.RUNNING)).decision == pb.ACCEPT
    return holder.id, waiter.id


def _running(run_id: str) -> pb.TaskRunStateProposal:
    return pb.TaskRunStateProposal(task_run_id=run_id, proposal=proposal(common_pb2.RUNNING), wait_for_decision=True)


def _completed(run_id: str) -> pb.TaskRunStateProposal:
    return pb.TaskRunStateProposal(task_run_id=run_id, proposal=proposal(common_pb2.COMPLETED, result_ref="r://held"))


async def test_a_holder_completing_later_in_the_same_batch_still_holds_its_key(orch):
    # The holder's COMPLETED comes after the other run's RUNNING in one batch (two flows in one
    # process share a stream): when the RUNNING is decided, the key is still held.
    holder, waiter = await _holder_and_waiter(orch)
    answer = await _one_message(orch, [_running(waiter), _completed(holder)])
    (decision,) = answer.decisions
    assert decision.task_run_id == waiter and decision.result.decision == pb.WAIT, decision.result


async def test_a_holder_completing_earlier_in_the_same_batch_is_a_hit(orch):
    holder, waiter = await _holder_and_waiter(orch)
    answer = await _one_message(orch, [_completed(holder), _running(waiter)])
    (decision,) = answer.decisions
    assert decision.result.decision == pb.REJECT and decision.result.state.name == "Cached"
    assert decision.result.state.details.result_ref == "r://held"
    assert decision.result.state.details.cached_from_task_run_id == holder


async def test_a_run_asking_again_is_not_its_own_hit(orch):
    # A task run an earlier attempt of its flow run completed without a result runs again in the
    # next attempt. Its own row is the newest COMPLETED one of its key, but no hit of itself: the
    # answer is the result another run computed.
    first, second = await _holder_and_waiter(orch)
    assert (await set_task_state(orch.stub, first, common_pb2.CRASHED, force=True)).decision == pb.ACCEPT
    assert (await set_task_state(orch.stub, second, common_pb2.RUNNING)).decision == pb.ACCEPT
    await set_task_state(orch.stub, second, common_pb2.COMPLETED, result_ref="r://second")
    await set_task_state(orch.stub, first, common_pb2.COMPLETED, force=True)  # no result
    flow_run_id = (await orch.stub.GetTaskRun(pb.GetTaskRunRequest(id=first))).task_run.flow_run_id
    await set_flow_state(orch.stub, flow_run_id, common_pb2.CRASHED, force=True)
    await set_flow_state(orch.stub, flow_run_id, common_pb2.RUNNING, force=True)  # the next attempt
    (decision,) = (await _one_message(orch, [_running(first)])).decisions
    assert decision.result.decision == pb.REJECT and decision.result.state.name == "Cached", decision.result
    assert decision.result.state.details.cached_from_task_run_id == second
    assert decision.result.state.details.result_ref == "r://second"


async def test_a_key_given_earlier_in_the_same_batch_is_looked_up(orch):
    # The run has no key until the first proposal of the batch gives it one; its RUNNING, later
    # in the same batch, is decided on that key: another run holds it, so it waits.
    run = await new_flow_run(orch.stub)
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    key = f"inputs-{uid()}"
    holder = await new_task_run(orch.stub, run.id, cache_key=key)
    assert (await set_task_state(orch.stub, holder.id, common_pb2.RUNNING)).decision == pb.ACCEPT
    keyless = await new_task_run(orch.stub, run.id)
    keyed = pb.TaskRunStateProposal(task_run_id=keyless.id, proposal=proposal(common_pb2.SCHEDULED, cache_key=key))
    answer = await _one_message(orch, [keyed, _running(keyless.id)])
    (decision,) = answer.decisions
    assert decision.result.decision == pb.WAIT and decision.result.rule == "cache_lookup", decision.result
