"""An orchestration service of its own per test: real gRPC server, database
(SQLite in a tmp home, or a fresh Postgres schema), embedded NATS shared by
the module, outbox relay. Function-scoped: tests move the clock, change
settings and count rows, so nothing leaks between them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from tests.fixtures.backends import BACKENDS, POSTGRES_URL, require_backend, unique_schema_prefix
from weir.v1 import orchestration_pb2_grpc
from weir_kit.db import Database
from weir_kit.grpc_server import GrpcServer
from weir_kit.jetstream import EmbeddedNats, Nats
from weir_kit.migrations import upgrade
from weir_kit.outbox import Outbox, OutboxRelay
from weir_kit.runtime import ServiceContext
from weir_kit.settings import KitSettings
from weir_orchestration import DEFINITION
from weir_orchestration.runtime import OrchestrationRuntime
from weir_orchestration.settings import OrchestrationSettings


@dataclass
class Clock:
    """A clock tests can move forward; it follows real time otherwise."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class OrchestrationStack:
    backend: str
    settings: KitSettings
    orchestration_settings: OrchestrationSettings
    db: Database
    nats: Nats
    outbox: Outbox
    relay: OutboxRelay | None
    runtime: OrchestrationRuntime
    server: GrpcServer
    channel: grpc.aio.Channel
    stub: orchestration_pb2_grpc.OrchestrationServiceStub
    clock: Clock

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def count(self, table_name: str, *where: Any) -> int:
        table = DEFINITION.metadata.tables[table_name]
        async with self.db.read() as session:
            return int((await session.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def orch_backend(request: pytest.FixtureRequest) -> str:
    require_backend(request.param)
    return str(request.param)


@pytest.fixture
def kit_overrides() -> dict[str, Any]:
    """Override in a test module to change the KitSettings (e.g. a small max message)."""
    return {}


@pytest.fixture
def orchestration_settings() -> OrchestrationSettings:
    # The sweeper only runs when a test calls sweep_once().
    return OrchestrationSettings(sweeper_interval_seconds=3600)


@pytest.fixture
def relay_enabled() -> bool:
    """Tests that count outbox rows keep the relay off so the rows stay put."""
    return False


@pytest.fixture
async def orch(
    orch_backend: str,
    nats_server: EmbeddedNats,
    kit_overrides: dict[str, Any],
    orchestration_settings: OrchestrationSettings,
    relay_enabled: bool,
    tmp_path: Path,
) -> AsyncIterator[OrchestrationStack]:
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "grpc_port": 0,
        "nats_url": nats_server.url,
        "outbox_poll_interval_seconds": 0.2,
        **kit_overrides,
    }
    if orch_backend == "postgres":
        values["database_url"] = POSTGRES_URL
        values["database_schema_prefix"] = unique_schema_prefix()
    settings = KitSettings(**values)
    db = Database(settings, DEFINITION.name)
    await upgrade(db, DEFINITION.migrations, DEFINITION.metadata)
    nats = await Nats.open(nats_server.url, settings, name="weir-orchestration-test")
    outbox = Outbox(DEFINITION.metadata.tables["outbox"], db, settings)
    relay = OutboxRelay(outbox, nats, settings) if relay_enabled else None
    clock = Clock()
    ctx = ServiceContext(settings=settings, db=db, nats=nats, outbox=outbox, clock=clock)
    runtime = OrchestrationRuntime(ctx, orchestration_settings)
    server = GrpcServer(settings)
    runtime.register(server.server)
    server.add_service_names(runtime.grpc_service_names)
    port = await server.start()
    await server.set_serving(True)
    await runtime.start()
    if relay is not None:
        relay.start()
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    stack = OrchestrationStack(
        backend=orch_backend,
        settings=settings,
        orchestration_settings=orchestration_settings,
        db=db,
        nats=nats,
        outbox=outbox,
        relay=relay,
        runtime=runtime,
        server=server,
        channel=channel,
        stub=orchestration_pb2_grpc.OrchestrationServiceStub(channel),
        clock=clock,
    )
    try:
        yield stack
    finally:
        await channel.close()
        await server.stop(grace=0.5)
        await runtime.stop()
        if relay is not None:
            await relay.stop()
        await nats.close()
        if orch_backend == "postgres":
            await db.drop_schema()
        await db.dispose()
        await asyncio.sleep(0)
