"""No-server mode: the embedded stack in this process (loaded lazily).

The one place the SDK reaches the host; import-linter allows only this edge.
"""

from __future__ import annotations

from typing import Any

from weir.settings import Settings


def start_embedded(settings: Settings) -> Any:
    """Start every service in-process on free loopback ports, SQLite under the home."""
    from weir_kit.settings import KitSettings
    from weir_server import Stack, StackThread

    kit = KitSettings(home=settings.home, grpc_port=0, api_key=settings.api_key)
    runner = StackThread(Stack(kit, http=False))
    runner.start()
    return runner
