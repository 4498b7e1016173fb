"""One computation per cache key when two transactions decide at the same moment (two SyncRuns
streams, two processes, two replicas): the second waits for the first's commit and answers WAIT."""

from __future__ import annotations

import asyncio

from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb
from weir_orchestration import states
from weir_orchestration.cache_keys import BUCKETS, buckets
from weir_orchestration.policy import RunKind

from .helpers import new_flow_run, new_task_run, set_flow_state, set_task_state, state, uid


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
