"""`weir server start`: the whole stack in one process (embedded default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run the Weir server: all five services and the REST gateway in one process.")


@app.command("start")
def start(
    host: Annotated[str, typer.Option(help="Address to bind (gRPC and HTTP).")] = "127.0.0.1",
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port of every service.")] = 4270,
    http_port: Annotated[int, typer.Option("--http-port", help="Port of the REST gateway.")] = 4280,
    home: Annotated[Path | None, typer.Option(help="Data folder (default: $WEIR_HOME or ~/.weir).")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="postgresql+asyncpg://... instead of SQLite under home.")
    ] = None,
    nats_url: Annotated[
        str | None, typer.Option("--nats-url", help="nats://... of an external JetStream instead of the embedded one.")
    ] = None,
) -> None:
    """Start every service on one gRPC port and the gateway on another; Ctrl-C stops it."""
    from weir.cli._hosting import serve

    overrides: dict[str, object] = {"grpc_host": host, "grpc_port": grpc_port, "http_port": http_port}
    if home is not None:
        overrides["home"] = home
    if database_url:
        overrides["database_url"] = database_url
    if nats_url:
        overrides["nats_url"] = nats_url
    serve(services=None, http=True, overrides=overrides)
