"""The concurrency service: v2 limits with leases, rate limits, the v1 tag
adapter. Scaffolding for now: it runs, answers
health, owns its database and migration history, and every RPC answers
UNIMPLEMENTED with a message that says so (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

from weir.v1 import concurrency_pb2_grpc
from weir_concurrency.models import metadata
from weir_kit.runtime import ServiceContext, ServiceDefinition
from weir_kit.scaffold import ScaffoldRuntime


def build(ctx: ServiceContext) -> ScaffoldRuntime:
    return ScaffoldRuntime(
        [
            (
                concurrency_pb2_grpc.add_ConcurrencyServiceServicer_to_server,
                concurrency_pb2_grpc.ConcurrencyServiceServicer,
            ),
        ],
        why="concurrency limits are not built yet in this release",
    )


DEFINITION = ServiceDefinition(
    name="concurrency",
    metadata=metadata,
    migrations=Path(__file__).parent / "migrations",
    build=build,
)

__all__ = ["DEFINITION"]
