"""The orchestration service as the host runs it: servicer + sweeper."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from weir.v1 import orchestration_pb2_grpc
from weir_kit.runtime import ServiceContext, ServiceRuntime
from weir_orchestration.servicer import OrchestrationServicer
from weir_orchestration.settings import OrchestrationSettings
from weir_orchestration.sweeper import Sweeper


class OrchestrationRuntime:
    grpc_service_names = ("weir.v1.OrchestrationService",)

    def __init__(self, svc: ServiceContext, settings: OrchestrationSettings) -> None:
        self.svc = svc
        self.settings = settings
        self.servicer = OrchestrationServicer(svc, settings)
        self.sweeper = Sweeper(svc, settings)

    def register(self, server: grpc.aio.Server) -> None:
        orchestration_pb2_grpc.add_OrchestrationServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        self.sweeper.start()

    async def stop(self) -> None:
        await self.sweeper.stop()


def builder(settings: OrchestrationSettings | None = None) -> Callable[[ServiceContext], ServiceRuntime]:
    """A ``build`` with given settings (tests); the default reads the environment at build time."""

    def build(svc: ServiceContext) -> ServiceRuntime:
        return OrchestrationRuntime(svc, settings or OrchestrationSettings())

    return build


build = builder()
