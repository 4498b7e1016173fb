"""The distributed topology as separate processes: two orchestration
replicas and one events service (`weir service NAME`) on one Postgres and one
external NATS JetStream. Runs created and moved through either replica reach
the events service exactly once, through JetStream."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.fixtures.backends import drop_schemas, require_backend, unique_schema_prefix
from tests.fixtures.services import Topology
from weir.client import AsyncWeirClient
from weir.client.types import EventFilter, State, StateType

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    require_backend("postgres")
    from weir_kit.jetstream import EmbeddedNats

    base = tmp_path_factory.mktemp("distributed")
    nats = EmbeddedNats(base / "nats")  # stands in for an external NATS cluster
    prefix = unique_schema_prefix()
    env = {**os.environ, "WEIR_DATABASE_SCHEMA_PREFIX": prefix, "WEIR_HOME": str(base / "home")}
    topo = Topology(base, nats.start(), env)
    try:
        for name, service in [
            ("orchestration-a", "orchestration"),
            ("orchestration-b", "orchestration"),
            ("events", "events"),
        ]:
            topo.start(name, service)
        yield topo.addresses
    finally:
        topo.stop_all()
        nats.stop()
        asyncio.run(drop_schemas(prefix))


async def test_two_replicas_one_events_service(topology: dict[str, str]) -> None:
    events_address = topology["events"]
    clients = [
        AsyncWeirClient(topology[name], service_addresses={"events": events_address})
        for name in ("orchestration-a", "orchestration-b")
    ]
    flow = f"dist-{uuid.uuid4().hex[:6]}"
    run_ids = []
    try:
        for i in range(6):
            # Create on one replica, move it on the other: they share the Postgres schema.
            creator, mover = clients[i % 2], clients[(i + 1) % 2]
            run = await creator.create_flow_run(flow_name=flow)
            assert (await mover.set_flow_run_state(run.id, State(type=StateType.RUNNING))).accepted
            assert (await mover.set_flow_run_state(run.id, State(type=StateType.COMPLETED))).accepted
            run_ids.append(run.id)

        expected = {
            (f"weir.flow-run.{rid}", name)
            for rid in run_ids
            for name in ("weir.flow-run.Pending", "weir.flow-run.Running", "weir.flow-run.Completed")
        }
        deadline = time.monotonic() + 20
        while True:
            seen: Counter[tuple[str, str]] = Counter()
            async for event in clients[0].iter_events(
                EventFilter(resource_ids=tuple(f"weir.flow-run.{rid}" for rid in run_ids))
            ):
                if event.event.startswith("weir.flow-run.") and event.resource_id.startswith("weir.flow-run."):
                    seen[(event.resource_id, event.event)] += 1
            if expected <= set(seen) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert expected <= set(seen)
        assert all(seen[key] == 1 for key in expected), "an event was persisted twice"
        # Both replicas see every run.
        for client in clients:
            for rid in run_ids:
                assert (await client.read_flow_run(rid)).state.type == StateType.COMPLETED
    finally:
        for client in clients:
            await client.close()
