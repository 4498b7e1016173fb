"""Building the gateway application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from weir.client import AsyncWeirClient
from weir.settings import Settings, get_settings
from weir_gateway.errors import install_error_handlers
from weir_gateway.routes import (
    deployments,
    events,
    flow_runs,
    flows,
    health,
    history,
    logs,
    task_runs,
    work_pools,
)


def create_app(
    client_factory: Callable[[], Any] | None = None,
    *,
    api_address: str | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """The gateway app, talking gRPC to ``api_address`` (or ``WEIR_API_ADDRESS``).

    ``client_factory`` replaces how the one :class:`AsyncWeirClient` is made
    (tests pass one); it is called once, lazily, inside the server's loop,
    because a gRPC aio channel belongs to the loop that made it.
    """
    if client_factory is None:
        config = settings or get_settings()
        if api_address is not None:
            config = config.model_copy(update={"api_address": api_address})
        if api_key is not None:
            config = config.model_copy(update={"api_key": api_key})

        def client_factory() -> AsyncWeirClient:
            # Raises Unavailable (-> 503) per request when no address is set.
            return AsyncWeirClient.from_settings(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        client = getattr(app.state, "weir_client", None)
        app.state.weir_client = None
        if client is not None and hasattr(client, "close"):
            await client.close()

    app = FastAPI(
        title="Weir",
        summary="REST front of the Weir orchestrator (backed by its gRPC services).",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.weir_client_factory = client_factory
    app.state.weir_client = None
    install_error_handlers(app)
    for module in (health, flows, flow_runs, task_runs, logs, events, history, deployments, work_pools):
        app.include_router(module.router, prefix="/api")
    return app
