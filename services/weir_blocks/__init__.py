"""The blocks service: block types, schemas and documents. Scaffolding for now: it runs, answers
health, owns its database and migration history, and every RPC answers
UNIMPLEMENTED with a message that says so (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

from weir.v1 import blocks_pb2_grpc
from weir_blocks.models import metadata
from weir_kit.runtime import ServiceContext, ServiceDefinition
from weir_kit.scaffold import ScaffoldRuntime


def build(ctx: ServiceContext) -> ScaffoldRuntime:
    return ScaffoldRuntime(
        [
            (
                blocks_pb2_grpc.add_BlockServiceServicer_to_server,
                blocks_pb2_grpc.BlockServiceServicer,
            ),
        ],
        why="blocks are not built yet in this release",
    )


DEFINITION = ServiceDefinition(
    name="blocks",
    metadata=metadata,
    migrations=Path(__file__).parent / "migrations",
    build=build,
)

__all__ = ["DEFINITION"]
