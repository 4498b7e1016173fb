"""The async typed client, composed of one mixin per gRPC service."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from grpc_health.v1 import health_pb2, health_pb2_grpc

from weir.client._grpc import Transport
from weir.client.deployments import DeploymentsAPI
from weir.client.events import EventsAPI
from weir.client.orchestration import OrchestrationAPI
from weir.errors import NotFound, Unavailable
from weir.settings import Settings, get_settings

__all__ = ["SERVICE_NAMES", "AsyncWeirClient", "get_client"]

#: The gRPC services a complete Weir server answers for.
SERVICE_NAMES: tuple[str, ...] = (
    "weir.v1.OrchestrationService",
    "weir.v1.DeploymentService",
    "weir.v1.WorkerService",
    "weir.v1.BlockService",
    "weir.v1.ConcurrencyService",
    "weir.v1.EventService",
)

#: Full service name -> the short name used for per-service addresses.
SERVICE_SHORT_NAMES: dict[str, str] = {
    "weir.v1.OrchestrationService": "orchestration",
    "weir.v1.DeploymentService": "deployments",
    "weir.v1.WorkerService": "deployments",
    "weir.v1.BlockService": "blocks",
    "weir.v1.ConcurrencyService": "concurrency",
    "weir.v1.EventService": "events",
}

NO_SERVER_MESSAGE = "no Weir server configured: set WEIR_API_ADDRESS or run `weir server start`"


class AsyncWeirClient(OrchestrationAPI, DeploymentsAPI, EventsAPI):
    """The typed async client of a Weir server.

    Use it as an async context manager so its channel is closed::

        async with AsyncWeirClient("127.0.0.1:4200") as client:
            page = await client.list_flow_runs(FlowRunFilter(state_types=(StateType.FAILED,)))

    or get one configured from ``WEIR_*`` settings with :func:`get_client`.
    Methods return ``weir.client.types`` values and raise ``weir.errors``
    exceptions; create it inside the event loop that uses it.
    """

    def __init__(
        self,
        address: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        read_retries: int = 3,
        service_addresses: Mapping[str, str] | None = None,
    ) -> None:
        self._transport = Transport(
            address,
            api_key=api_key,
            timeout=timeout,
            read_retries=read_retries,
            service_addresses=service_addresses,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncWeirClient:
        """A client for ``settings.api_address``; Unavailable when it is unset."""
        if not settings.api_address:
            raise Unavailable(NO_SERVER_MESSAGE)
        return cls(
            settings.api_address,
            api_key=settings.api_key,
            timeout=settings.request_timeout_seconds,
            read_retries=settings.read_retries,
            service_addresses=settings.service_addresses,
        )

    @property
    def address(self) -> str:
        return self._transport.address

    async def close(self) -> None:
        if self._proposal_cache is not None:
            stream, self._proposal_cache = self._proposal_cache[1], None
            await stream.close()
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def health(self) -> dict[str, str]:
        """The grpc.health.v1 status of every Weir service, by service name.

        Values are ``SERVING``, ``NOT_SERVING``, ``SERVICE_UNKNOWN`` (the
        server does not host that service) or ``UNKNOWN``. Raises
        ``weir.errors.Unavailable`` when the server cannot be reached.
        """
        statuses = await asyncio.gather(*(self._check(name) for name in SERVICE_NAMES))
        return dict(zip(SERVICE_NAMES, statuses, strict=True))

    async def _check(self, service: str) -> str:
        short = SERVICE_SHORT_NAMES[service]
        stub = health_pb2_grpc.HealthStub(self._transport.channel_for(short))
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            resp = await self._transport.unary(stub.Check, request, idempotent=True)
        except NotFound:
            # A server that does not host the service answers NOT_FOUND.
            return "SERVICE_UNKNOWN"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


async def get_client(settings: Settings | None = None) -> AsyncWeirClient:
    """An :class:`AsyncWeirClient` for the configured server (``WEIR_API_ADDRESS``).

    Raises ``weir.errors.Unavailable`` when no server is configured.
    """
    return AsyncWeirClient.from_settings(settings or get_settings())
