"""NATS away while runs change state: the writes still succeed (their events
wait in the outbox), and once NATS is back every event reaches the
persister exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from weir.client import AsyncWeirClient
from weir.client.types import EventFilter, State, StateType

pytestmark = pytest.mark.slow

STATES = ("weir.flow-run.Pending", "weir.flow-run.Running", "weir.flow-run.Completed")


@pytest.fixture
def own_stack(backend: str, tmp_path) -> Iterator[object]:
    """A stack of its own: this test stops its NATS."""
    from tests.fixtures.backends import drop_schemas
    from tests.fixtures.stack import build_settings
    from weir_server import Stack, StackThread

    settings = build_settings(backend, tmp_path / "home", outbox_max_backoff_seconds=0.5)
    runner = StackThread(Stack(settings, http=False))
    runner.start()
    yield runner
    runner.stop()
    if backend == "postgres":
        asyncio.run(drop_schemas(settings.database_schema_prefix))


async def _persisted(client: AsyncWeirClient, run_ids: list[str]) -> Counter[tuple[str, str]]:
    seen: Counter[tuple[str, str]] = Counter()
    async for event in client.iter_events(EventFilter(resource_ids=tuple(f"weir.flow-run.{r}" for r in run_ids))):
        if event.event in STATES:
            seen[(event.resource_id, event.event)] += 1
    return seen


async def test_state_changes_survive_a_nats_outage(own_stack) -> None:
    stack = own_stack.stack
    nats = stack.embedded_nats
    async with AsyncWeirClient(stack.address) as client:
        await asyncio.to_thread(nats.stop)
        run_ids = []
        for _ in range(5):
            run = await client.create_flow_run(flow_name=f"outage-{uuid.uuid4().hex[:6]}")
            assert (await client.set_flow_run_state(run.id, State(type=StateType.RUNNING))).accepted
            assert (await client.set_flow_run_state(run.id, State(type=StateType.COMPLETED))).accepted
            run_ids.append(run.id)
        # Nothing could be published: the events wait in orchestration's outbox.
        orchestration = next(h for h in stack.hosted if h.name == "orchestration")
        assert (
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(orchestration.outbox.pending(), own_stack.loop))
            >= 15
        )
        assert await _persisted(client, run_ids) == Counter()

        await asyncio.to_thread(nats.start)  # same port, same store
        expected = {(f"weir.flow-run.{r}", name) for r in run_ids for name in STATES}
        deadline = time.monotonic() + 30
        while True:
            seen = await _persisted(client, run_ids)
            if expected <= set(seen) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert expected <= set(seen)
        assert all(count == 1 for count in seen.values())
