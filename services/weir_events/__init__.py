"""The events service: ingest, persistence, reads and live subscriptions of events."""

from pathlib import Path

from weir_events.models import metadata
from weir_events.runtime import EventsRuntime, build
from weir_events.settings import EventsSettings
from weir_kit.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="events",
    metadata=metadata,
    migrations=Path(__file__).parent / "migrations",
    build=build,
)

__all__ = ["DEFINITION", "EventsRuntime", "EventsSettings", "build"]
