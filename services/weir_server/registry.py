"""The services a Weir process can host, by short name, imported on demand."""

from __future__ import annotations

import importlib

from weir_kit.runtime import ServiceDefinition

#: Short name -> package exposing ``DEFINITION``. Order is start order.
SERVICES: dict[str, str] = {
    "orchestration": "weir_orchestration",
    "deployments": "weir_deployments",
    "blocks": "weir_blocks",
    "concurrency": "weir_concurrency",
    "events": "weir_events",
}


def load(name: str) -> ServiceDefinition:
    try:
        module = SERVICES[name]
    except KeyError:
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}") from None
    definition = importlib.import_module(module).DEFINITION
    assert isinstance(definition, ServiceDefinition)
    return definition
