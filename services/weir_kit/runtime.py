"""What a service package gives the host, and what the host gives a service.

A service package exposes ``DEFINITION = ServiceDefinition(...)``. The host
(``weir_server``) opens the database, applies the migrations, wires the
outbox relay and NATS, then calls ``definition.build(context)`` and registers
the returned runtime on its gRPC server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from sqlalchemy import MetaData

from weir_kit.clock import Clock, utcnow
from weir_kit.db import Database
from weir_kit.jetstream import Nats
from weir_kit.outbox import Outbox
from weir_kit.settings import KitSettings


@dataclass
class ServiceContext:
    settings: KitSettings
    db: Database
    nats: Nats
    outbox: Outbox
    clock: Clock = field(default=utcnow)
    #: The gRPC address this process serves on (set before ``start``): a service that calls
    #: another one hosted in the same process uses it when no address is configured.
    address: str = ""


class ServiceRuntime(Protocol):
    """A built service: its gRPC servicers and its background loops."""

    #: Full gRPC service names, e.g. ``weir.v1.OrchestrationService``.
    grpc_service_names: Sequence[str]

    def register(self, server: grpc.aio.Server) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class ServiceDefinition:
    #: Short name: ``orchestration``, ``events``, ... (database file / schema suffix).
    name: str
    metadata: MetaData
    #: The service's Alembic ``migrations`` folder.
    migrations: Path
    build: Callable[[ServiceContext], ServiceRuntime]
