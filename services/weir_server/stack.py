"""A running set of Weir services in one process.

``weir server start`` hosts all five services on one gRPC port (plus the
gateway); ``weir service NAME`` hosts one. Both go through :class:`Stack`, so
the embedded default and the distributed deployment share every code path:
the same databases, migrations, outbox relays and NATS JetStream.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from weir_kit.clock import Clock, utcnow
from weir_kit.db import Database
from weir_kit.grpc_server import GrpcServer
from weir_kit.jetstream import EmbeddedNats, Nats
from weir_kit.migrations import upgrade_all
from weir_kit.outbox import Outbox, OutboxRelay
from weir_kit.runtime import ServiceContext, ServiceRuntime
from weir_kit.settings import KitSettings
from weir_server.registry import SERVICES, load

log = logging.getLogger("weir.server")


@dataclass
class HostedService:
    name: str
    db: Database
    outbox: Outbox
    relay: OutboxRelay
    runtime: ServiceRuntime
    ctx: ServiceContext


@dataclass
class Stack:
    settings: KitSettings
    services: Sequence[str] = tuple(SERVICES)
    #: Serve the REST gateway on ``settings.http_port`` too.
    http: bool = True
    clock: Clock = utcnow
    hosted: list[HostedService] = field(default_factory=list)
    embedded_nats: EmbeddedNats | None = None
    nats: Nats | None = None
    grpc: GrpcServer | None = None
    grpc_port: int = 0
    http_port: int = 0
    nats_url: str = ""
    #: Seconds from start() until every gRPC service answered SERVING; ready_seconds adds the gateway.
    serving_seconds: float = 0.0
    ready_seconds: float = 0.0
    _gateway: Any = None
    _gateway_task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.settings.grpc_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.grpc_host}:{self.http_port}"

    async def start(self) -> None:
        started = time.perf_counter()
        if self.settings.nats_url:
            self.nats_url = self.settings.nats_url
        else:
            self.embedded_nats = EmbeddedNats(self.settings.home / "nats")
            # Started from the loop's own thread on purpose: the child's parent-death signal
            # follows the thread that spawned it, and an executor thread may exit first.
            # Spawned before the services' modules load, so it boots while they import.
            self.embedded_nats.spawn()
        try:
            definitions = [load(name) for name in self.services]
            if self.embedded_nats is not None:
                self.nats_url = self.embedded_nats.wait_ready()
            self.nats = await Nats.open(self.nats_url, self.settings, name="weir-server")
            dbs = [Database(self.settings, d.name) for d in definitions]
            await upgrade_all([(db, d.migrations, d.metadata) for db, d in zip(dbs, definitions, strict=True)])
            self.grpc = GrpcServer(self.settings)
            for definition, db in zip(definitions, dbs, strict=True):
                outbox = Outbox(definition.metadata.tables["outbox"], db, self.settings)
                relay = OutboxRelay(outbox, self.nats, self.settings)
                ctx = ServiceContext(settings=self.settings, db=db, nats=self.nats, outbox=outbox, clock=self.clock)
                runtime = definition.build(ctx)
                runtime.register(self.grpc.server)
                self.grpc.add_service_names(runtime.grpc_service_names)
                self.hosted.append(HostedService(definition.name, db, outbox, relay, runtime, ctx))
            self.grpc_port = await self.grpc.start()
            for hosted in self.hosted:
                hosted.ctx.address = self.address
                await hosted.runtime.start()
                hosted.relay.start()
            await self.grpc.set_serving(True)
            await self._wait_healthy()
            self.serving_seconds = time.perf_counter() - started
            if self.http:
                # The gateway's imports (FastAPI builds its OpenAPI models, ~0.1 s) are the largest
                # part of a cold start. They come after the gRPC services answer, not beside them:
                # under the GIL a thread importing them only slowed the services down, and the
                # gateway was up no sooner. On a thread
                # still, so the loop keeps answering gRPC meanwhile. Figures: bench/RESULTS.md, session 7.
                await asyncio.to_thread(importlib.import_module, "weir_gateway")
                await self._start_gateway()
        except BaseException:
            await self.stop()
            raise
        self.ready_seconds = time.perf_counter() - started
        log.info("weir ready in %.3fs: grpc %s", self.ready_seconds, self.address)

    async def _wait_healthy(self) -> None:
        """Ready means every hosted service answers SERVING over the real port."""
        assert self.grpc is not None
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            names = self.grpc.service_names
            checks = (stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5) for name in names)
            replies = await asyncio.gather(*checks, return_exceptions=True)
            for name, reply in zip(names, replies, strict=True):
                if isinstance(reply, BaseException):
                    raise reply
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    raise RuntimeError(f"{name} is not serving")

    async def _start_gateway(self) -> None:
        import uvicorn

        from weir_gateway import create_app

        app = create_app(api_address=self.address, api_key=self.settings.api_key)
        config = uvicorn.Config(
            app, host=self.settings.grpc_host, port=self.settings.http_port, log_level="warning", lifespan="on"
        )
        self._gateway = uvicorn.Server(config)
        self._gateway.install_signal_handlers = lambda: None  # the host owns signals
        self._gateway_task = asyncio.create_task(self._gateway.serve(), name="gateway")
        while not self._gateway.started:
            if self._gateway_task.done():
                self._gateway_task.result()
                raise OSError(f"gateway could not listen on port {self.settings.http_port}")
            await asyncio.sleep(0.005)
        self.http_port = self._gateway.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop in reverse order; every step is bounded so a stuck part cannot hang the exit."""
        if self._gateway is not None and self._gateway_task is not None:
            self._gateway.should_exit = True
            await _bounded(self._gateway_task, "gateway", 5)
            self._gateway = None
        if self.grpc is not None:
            await _bounded(self.grpc.stop(grace=1.0), "grpc server", 5)
            self.grpc = None
        for hosted in reversed(self.hosted):
            await _bounded(hosted.runtime.stop(), f"{hosted.name} service", 10)
            await _bounded(hosted.relay.stop(), f"{hosted.name} outbox relay", 5)
        for hosted in self.hosted:
            await _bounded(hosted.db.dispose(), f"{hosted.name} database", 5)
        self.hosted.clear()
        if self.nats is not None:
            await _bounded(self.nats.close(), "nats connection", 5)
            self.nats = None
        if self.embedded_nats is not None:
            # Blocking on purpose: at interpreter exit the default executor is already gone.
            self.embedded_nats.stop()
            self.embedded_nats = None


async def _bounded(awaitable: Awaitable[object], what: str, seconds: float) -> None:
    log.debug("stopping %s", what)
    try:
        await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        log.warning("%s did not stop within %.0fs; going on", what, seconds)
    except Exception as exc:  # a part that failed while stopping must not keep the rest running
        log.warning("%s failed while stopping: %r", what, exc)
