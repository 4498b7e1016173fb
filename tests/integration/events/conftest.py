"""An events service of its own per test: gRPC server, database (SQLite or
Postgres), embedded NATS in a tmp dir (so a test may stop and restart it),
outbox relay, persister. Function-scoped because tests break NATS on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.fixtures.backends import BACKENDS, POSTGRES_URL, require_backend, unique_schema_prefix
from weir.v1 import events_pb2_grpc
from weir_events import DEFINITION, EventsRuntime, EventsSettings
from weir_kit.db import Database
from weir_kit.grpc_server import GrpcServer
from weir_kit.jetstream import EmbeddedNats, Nats
from weir_kit.migrations import upgrade
from weir_kit.outbox import Outbox, OutboxRelay
from weir_kit.runtime import ServiceContext
from weir_kit.settings import KitSettings

PERSISTER = "weir-events-persister"


@dataclass
class EventsStack:
    backend: str
    settings: KitSettings
    events_settings: EventsSettings
    db: Database
    nats_server: EmbeddedNats
    nats: Nats
    outbox: Outbox
    relay: OutboxRelay
    runtime: EventsRuntime
    server: GrpcServer
    channel: grpc.aio.Channel
    stub: events_pb2_grpc.EventServiceStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def consumer_names(self) -> set[str]:
        infos = await self.nats.js.consumers_info(self.settings.events_stream)
        return {info.name for info in infos}


async def _wait_for_consumer(nats: Nats, stream: str, name: str) -> None:
    from nats.js.errors import NotFoundError

    for _ in range(500):
        try:
            await nats.js.consumer_info(stream, name)
            return
        except NotFoundError:
            await asyncio.sleep(0.01)
    pytest.fail(f"persister consumer {name} not created")


@pytest.fixture(params=BACKENDS)
def events_backend(request: pytest.FixtureRequest) -> str:
    require_backend(request.param)
    return str(request.param)


@pytest.fixture
def events_settings() -> EventsSettings:
    # A long inactive threshold: a consumer gone quickly was deleted by us, not by NATS.
    return EventsSettings(subscriber_inactive_threshold_seconds=30.0, persister_fetch_timeout_seconds=1.0)


@pytest.fixture
async def events_stack(
    events_backend: str, events_settings: EventsSettings, tmp_path: Path
) -> AsyncIterator[EventsStack]:
    nats_server = EmbeddedNats(tmp_path / "nats")
    await asyncio.to_thread(nats_server.start)
    values: dict[str, object] = {
        "home": tmp_path / "home",
        "grpc_port": 0,
        "nats_url": nats_server.url,
        "outbox_max_backoff_seconds": 0.5,
        "outbox_poll_interval_seconds": 0.2,
    }
    if events_backend == "postgres":
        values["database_url"] = POSTGRES_URL
        values["database_schema_prefix"] = unique_schema_prefix()
    settings = KitSettings(**values)  # type: ignore[arg-type]
    db = Database(settings, DEFINITION.name)
    await upgrade(db, DEFINITION.migrations, DEFINITION.metadata)
    nats = await Nats.open(nats_server.url, settings, name="weir-events-test")
    outbox = Outbox(DEFINITION.metadata.tables["outbox"], db, settings)
    relay = OutboxRelay(outbox, nats, settings)
    runtime = EventsRuntime(ServiceContext(settings=settings, db=db, nats=nats, outbox=outbox), events_settings)
    server = GrpcServer(settings)
    runtime.register(server.server)
    server.add_service_names(runtime.grpc_service_names)
    port = await server.start()
    await server.set_serving(True)
    await runtime.start()
    relay.start()
    await _wait_for_consumer(nats, settings.events_stream, events_settings.persister_consumer)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stack = EventsStack(
        backend=events_backend,
        settings=settings,
        events_settings=events_settings,
        db=db,
        nats_server=nats_server,
        nats=nats,
        outbox=outbox,
        relay=relay,
        runtime=runtime,
        server=server,
        channel=channel,
        stub=events_pb2_grpc.EventServiceStub(channel),
    )
    try:
        yield stack
    finally:
        await channel.close()
        await server.stop(grace=0.5)
        await runtime.stop()
        await relay.stop()
        await nats.close()
        nats_server.stop()
        if events_backend == "postgres":
            await db.drop_schema()
        await db.dispose()
