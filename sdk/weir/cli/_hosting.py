"""Runs a Stack in the foreground until SIGINT/SIGTERM (server commands only).

Imports the host lazily: `import weir` and the other CLI commands never load
the services, SQLAlchemy or FastAPI.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Sequence

from rich.console import Console

console = Console(stderr=True)
log = logging.getLogger("weir.server")


def serve(services: Sequence[str] | None, http: bool, overrides: dict[str, object]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("weir.server").setLevel(logging.INFO)
    asyncio.run(_serve(services, http, overrides))


async def _serve(services: Sequence[str] | None, http: bool, overrides: dict[str, object]) -> None:
    from weir_kit.settings import KitSettings
    from weir_server.registry import SERVICES
    from weir_server.stack import Stack

    settings = KitSettings(**overrides)  # type: ignore[arg-type]
    stack = Stack(settings, services=tuple(services or SERVICES), http=http)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stack.start()
    # Everything loaded so far (modules, SQLAlchemy's metadata, FastAPI's models: ~130,000
    # objects the collector tracks) lives as long as the process. Frozen, the collector stops
    # walking it on every full collection, which SyncRuns' allocations trigger several
    # times a second under load: +25% ingest (bench/RESULTS.md, session 7).
    gc.freeze()
    log.debug("froze %d objects", gc.get_freeze_count())
    names = ", ".join(stack.grpc.service_names if stack.grpc else ())
    console.print(f"[green]Weir ready[/] in {stack.ready_seconds:.2f}s")
    console.print(f"  gRPC     {stack.address}  ({names})")
    if http:
        console.print(f"  REST     {stack.http_url}/api  (OpenAPI: {stack.http_url}/docs)")
    console.print(f"  NATS     {stack.nats_url}" + ("  (embedded)" if stack.embedded_nats else ""))
    store = settings.database_url or f"SQLite under {settings.home}"
    console.print(f"  storage  {store}")
    console.print(f"  clients: export WEIR_API_ADDRESS={stack.address}")
    try:
        await stop.wait()
    finally:
        console.print("stopping...")
        await stack.stop()
        console.print("stopped")
