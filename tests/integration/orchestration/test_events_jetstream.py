"""State-change events reach JetStream through the outbox relay."""

from __future__ import annotations

import asyncio

import pytest

from weir.v1 import common_pb2

from .helpers import new_flow_run, set_flow_state


@pytest.fixture
def relay_enabled() -> bool:
    return True


async def test_flow_run_events_published(orch):
    got: list[common_pb2.Event] = []
    sub = await orch.nats.js.subscribe("weir.events.weir.flow-run.>", ordered_consumer=True)
    run = await new_flow_run(orch.stub)
    await set_flow_state(orch.stub, run.id, common_pb2.RUNNING)
    await set_flow_state(orch.stub, run.id, common_pb2.COMPLETED)
    wanted = {"weir.flow-run.created", "weir.flow-run.Pending", "weir.flow-run.Running", "weir.flow-run.Completed"}
    async with asyncio.timeout(10):
        while not wanted <= {e.event for e in got if e.resource.labels["weir.resource.id"].endswith(run.id)}:
            msg = await sub.next_msg(timeout=5)
            got.append(common_pb2.Event.FromString(msg.data))
    await sub.unsubscribe()
    mine = [e.event for e in got if e.resource.labels["weir.resource.id"].endswith(run.id)]
    assert mine.index("weir.flow-run.Running") < mine.index("weir.flow-run.Completed")
    async with asyncio.timeout(10):  # the relay deletes what it published
        while await orch.outbox.pending():
            await asyncio.sleep(0.05)
