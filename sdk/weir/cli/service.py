"""`weir service NAME`: one service in its own process (distributed mode)."""

from __future__ import annotations

from typing import Annotated

import typer

SERVICE_NAMES = ("orchestration", "deployments", "blocks", "concurrency", "events")


def service(
    name: Annotated[str, typer.Argument(help="One of: " + ", ".join(SERVICE_NAMES))],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port of this replica.")] = 4270,
    database_url: Annotated[
        str | None, typer.Option("--database-url", envvar="WEIR_DATABASE_URL", help="postgresql+asyncpg://...")
    ] = None,
    nats_url: Annotated[str | None, typer.Option("--nats-url", envvar="WEIR_NATS_URL", help="nats://...")] = None,
) -> None:
    """Run a single service; start as many replicas as you like against one Postgres and NATS."""
    from weir.cli._hosting import serve
    from weir.errors import InvalidArgument

    if name not in SERVICE_NAMES:
        raise InvalidArgument(f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)}", field="name")
    if not database_url or not nats_url:
        raise InvalidArgument(
            "`weir service` runs against shared infrastructure: give --database-url (Postgres) and --nats-url"
        )
    overrides: dict[str, object] = {
        "grpc_host": host,
        "grpc_port": grpc_port,
        "database_url": database_url,
        "nats_url": nats_url,
    }
    serve(services=[name], http=False, overrides=overrides)
