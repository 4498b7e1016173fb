"""Plumbing shared by the Weir services: settings, database, migrations,
gRPC server, NATS JetStream and the transactional outbox."""

from weir_kit.runtime import ServiceContext, ServiceDefinition, ServiceRuntime
from weir_kit.settings import KitSettings

__all__ = ["KitSettings", "ServiceContext", "ServiceDefinition", "ServiceRuntime"]
