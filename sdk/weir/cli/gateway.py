"""`weir gateway`: the REST gateway on its own (distributed topology)."""

from __future__ import annotations

from typing import Annotated

import typer


def gateway(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option("--http-port", help="HTTP port.")] = 4280,
) -> None:
    """Serve the REST gateway, reaching the services over gRPC at WEIR_API_ADDRESS."""
    import uvicorn

    from weir.settings import get_settings
    from weir_gateway import create_app

    uvicorn.run(create_app(settings=get_settings()), host=host, port=http_port, log_level="warning")
