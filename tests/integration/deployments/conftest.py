"""A whole Weir stack per test module (both backends) with the deployments
service's timeouts shortened, so the repair paths (unacked assignments,
offline workers) run in a second instead of half a minute; and a small
worker-stream driver that speaks the protocol over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from tests.fixtures.backends import BACKENDS, drop_schemas, require_backend
from tests.fixtures.stack import build_settings
from weir.v1 import deployments_pb2 as pb
from weir.v1 import deployments_pb2_grpc, orchestration_pb2_grpc

FAST = {
    "WEIR_DEPLOYMENTS_ASSIGNMENT_ACK_TIMEOUT_SECONDS": "1.5",
    "WEIR_DEPLOYMENTS_SWEEPER_INTERVAL_SECONDS": "0.3",
    "WEIR_DEPLOYMENTS_WORKER_OFFLINE_AFTER_SECONDS": "2",
    "WEIR_DEPLOYMENTS_WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "WEIR_DEPLOYMENTS_SCHEDULER_INTERVAL_SECONDS": "0.5",
    "WEIR_ORCHESTRATION_SWEEPER_INTERVAL_SECONDS": "0.3",
    "WEIR_ORCHESTRATION_HEARTBEAT_TIMEOUT_SECONDS": "3",
}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module", params=BACKENDS)
def dthread(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The stack on a thread of its own (``.run(coro)`` runs a coroutine on its loop)."""
    from weir_server import Stack, StackThread

    require_backend(request.param)
    settings = build_settings(request.param, tmp_path_factory.mktemp(f"dep-{request.param}"))
    with environment(FAST):
        runner = StackThread(Stack(settings, http=False))
        runner.start()
    try:
        yield runner
    finally:
        runner.stop()
        if request.param == "postgres":
            asyncio.run(drop_schemas(settings.database_schema_prefix))


@pytest.fixture(scope="module")
def dstack(dthread: Any) -> Any:
    return dthread.stack


@dataclass
class Api:
    channel: grpc.aio.Channel
    deployments: deployments_pb2_grpc.DeploymentServiceStub
    workers: deployments_pb2_grpc.WorkerServiceStub
    orchestration: orchestration_pb2_grpc.OrchestrationServiceStub


@pytest.fixture
async def api(dstack: Any) -> AsyncIterator[Api]:
    channel = grpc.aio.insecure_channel(dstack.address)
    yield Api(
        channel,
        deployments_pb2_grpc.DeploymentServiceStub(channel),
        deployments_pb2_grpc.WorkerServiceStub(channel),
        orchestration_pb2_grpc.OrchestrationServiceStub(channel),
    )
    await channel.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class FakeWorker:
    """Drives one worker stream by hand: the test decides what the worker says."""

    call: Any
    welcome: pb.Welcome
    received: asyncio.Queue[pb.ServerMessage] = field(default_factory=asyncio.Queue)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, api: Api, pool: str, name: str, slots: int, queues: tuple[str, ...] = ()) -> FakeWorker:
        call = api.workers.Connect()
        hello = pb.Hello(worker_name=name, work_pool_name=pool, free_slots=slots, work_queue_names=queues)
        await call.write(pb.WorkerMessage(hello=hello))
        first = await asyncio.wait_for(call.read(), 10)
        assert first.WhichOneof("body") == "welcome", first
        worker = cls(call, first.welcome)
        worker._reader = asyncio.create_task(worker._read())
        return worker

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                msg = await self.call.read()
                if msg is grpc.aio.EOF:
                    return
                await self.received.put(msg)

    async def next(self, kind: str, timeout: float = 10.0) -> Any:
        """The next message of ``kind`` (others are dropped)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.received.get()
                if msg.WhichOneof("body") == kind:
                    return getattr(msg, kind)

    async def send(self, **body: Any) -> None:
        await self.call.write(pb.WorkerMessage(**body))

    async def close(self) -> None:
        self.call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
