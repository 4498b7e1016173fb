"""The orchestration service: flows, flow runs, task runs, states and the
orchestration policy, logs, run history and the SyncRuns hot path."""

from pathlib import Path

from weir_kit.runtime import ServiceDefinition
from weir_orchestration.models import metadata
from weir_orchestration.runtime import build

DEFINITION = ServiceDefinition(
    name="orchestration", metadata=metadata, migrations=Path(__file__).parent / "migrations", build=build
)

__all__ = ["DEFINITION"]
