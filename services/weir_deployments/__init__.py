"""The deployments service: deployments, schedules, work pools and queues,
and the worker stream. Scaffolding for now: it runs, answers
health, owns its database and migration history, and every RPC answers
UNIMPLEMENTED with a message that says so (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

from weir.v1 import deployments_pb2_grpc
from weir_deployments.models import metadata
from weir_kit.runtime import ServiceContext, ServiceDefinition
from weir_kit.scaffold import ScaffoldRuntime


def build(ctx: ServiceContext) -> ScaffoldRuntime:
    return ScaffoldRuntime(
        [
            (
                deployments_pb2_grpc.add_DeploymentServiceServicer_to_server,
                deployments_pb2_grpc.DeploymentServiceServicer,
            ),
            (
                deployments_pb2_grpc.add_WorkerServiceServicer_to_server,
                deployments_pb2_grpc.WorkerServiceServicer,
            ),
        ],
        why="deployments, work pools and workers are not built yet in this release",
    )


DEFINITION = ServiceDefinition(
    name="deployments",
    metadata=metadata,
    migrations=Path(__file__).parent / "migrations",
    build=build,
)

__all__ = ["DEFINITION"]
