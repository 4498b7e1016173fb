"""The deployments service as the host runs it: servicers + dispatcher,
tracker, scheduler and sweeper, and the NATS core subjects that let
replicas wake each other (a new run on one replica, a worker on another)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from weir.v1 import deployments_pb2_grpc
from weir_deployments.dispatch import Dispatcher
from weir_deployments.remote import Orchestration
from weir_deployments.scheduler import Scheduler
from weir_deployments.servicer import DeploymentServicer, WorkerServicer
from weir_deployments.settings import DeploymentsSettings
from weir_deployments.sweeper import Sweeper
from weir_deployments.tracker import Tracker
from weir_deployments.workers import Hub, WorkerStreams
from weir_kit.runtime import ServiceContext, ServiceRuntime

log = logging.getLogger("weir.deployments")


class DeploymentsRuntime:
    grpc_service_names = ("weir.v1.DeploymentService", "weir.v1.WorkerService")

    def __init__(self, svc: ServiceContext, settings: DeploymentsSettings) -> None:
        self.svc = svc
        self.settings = settings
        self.replica = uuid.uuid4().hex[:12]
        self.hub = Hub()
        self.hub.on_credit = self._local_wake
        self.streams = WorkerStreams(svc, settings, self.hub, self.replica)
        self.orch: Orchestration = None  # type: ignore[assignment]  # built in start(): needs the address
        self._subs: list[Any] = []
        prefix = f"{svc.settings.events_stream}.deployments"
        self._wake_subject = f"{prefix}.wake"
        self._cancel_subject = f"{prefix}.cancel"

    def register(self, server: grpc.aio.Server) -> None:
        deployments_pb2_grpc.add_DeploymentServiceServicer_to_server(DeploymentServicer(self), server)
        deployments_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerServicer(self), server)

    async def start(self) -> None:
        address = self.settings.orchestration_address or self.svc.address
        self.orch = Orchestration(address, self.svc.settings.api_key)
        self.dispatcher = Dispatcher(self.svc, self.settings, self.hub, self.orch)
        self.scheduler = Scheduler(self.svc, self.settings, self.orch, self.wake_pool)
        self.tracker = Tracker(self.svc, self.settings, self.wake_pool, self.cancel)
        self.sweeper = Sweeper(self.svc, self.settings, self.orch, lambda: set(self.hub.connections), self.wake_pool)
        client = self.svc.nats.client
        self._subs = [
            await client.subscribe(self._wake_subject, cb=self._on_wake),
            await client.subscribe(self._cancel_subject, cb=self._on_cancel),
        ]
        for loop in (self.dispatcher, self.scheduler, self.tracker, self.sweeper):
            loop.start()

    async def stop(self) -> None:
        self.hub.close_all("the server is shutting down")
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for loop in (self.sweeper, self.tracker, self.scheduler, self.dispatcher):
            await loop.stop()
        await self.orch.close()

    # ---------------------------------------------------------------- wake-ups

    def _local_wake(self, pool: str = "") -> None:
        self.dispatcher.wake(pool)

    def wake_pool(self, pool: str) -> None:
        """Runs may be claimable in ``pool``: wake this replica's dispatcher and every other's."""
        self._local_wake(pool)
        self._publish(self._wake_subject, pool)

    def cancel(self, worker: str, flow_run_id: str) -> None:
        """Push a Cancel to ``worker``, wherever its stream is held."""
        if not self.hub.cancel(worker, flow_run_id):
            self._publish(self._cancel_subject, f"{worker}/{flow_run_id}")

    def _publish(self, subject: str, text: str) -> None:
        async def publish() -> None:
            try:
                await self.svc.nats.client.publish(subject, text.encode())
            except Exception as exc:  # best effort: the periodic round and heartbeats cover a lost one
                log.debug("could not publish %s: %s", subject, exc)

        task = asyncio.get_running_loop().create_task(publish())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _on_wake(self, msg: Any) -> None:
        self._local_wake(msg.data.decode())

    async def _on_cancel(self, msg: Any) -> None:
        worker, _, flow_run_id = msg.data.decode().partition("/")
        self.hub.cancel(worker, flow_run_id)


_background: set[asyncio.Task[None]] = set()


def builder(settings: DeploymentsSettings | None = None) -> Callable[[ServiceContext], ServiceRuntime]:
    """A ``build`` with given settings (tests); the default reads the environment at build time."""

    def build(svc: ServiceContext) -> ServiceRuntime:
        return DeploymentsRuntime(svc, settings or DeploymentsSettings())

    return build


build = builder()
