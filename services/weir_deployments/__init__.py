"""The deployments service: deployments and their schedules, work pools and
queues, and the worker stream that hands runs to worker daemons."""

from pathlib import Path

from weir_deployments.models import metadata
from weir_deployments.runtime import build
from weir_kit.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="deployments", metadata=metadata, migrations=Path(__file__).parent / "migrations", build=build
)

__all__ = ["DEFINITION"]
