"""Servicers for services whose RPCs are declared but not built yet.

Every RPC answers UNIMPLEMENTED with a message that says so, instead of the
generated "Method not implemented!". This is scaffolding, not a feature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from weir.errors import Unimplemented


def unimplemented_servicer(base: type, service: str, why: str) -> Any:
    """An instance of a subclass of ``base`` whose every RPC raises Unimplemented."""

    def make(rpc: str) -> Any:
        async def method(self: Any, request: Any, context: Any) -> Any:
            raise Unimplemented(f"{service}.{rpc} is not available yet: {why}")

        return method

    rpcs = {name: make(name) for name, _ in inspect.getmembers(base, inspect.isfunction) if name[0].isupper()}
    return type(f"Unimplemented{base.__name__}", (base,), rpcs)()


class ScaffoldRuntime:
    """A service runtime whose servicers all answer UNIMPLEMENTED.

    ``servicers`` pairs each generated ``add_XServicer_to_server`` function
    with its generated base class.
    """

    def __init__(self, servicers: Sequence[tuple[Callable[[Any, Any], None], type]], why: str) -> None:
        self._servicers = servicers
        self._why = why
        self.grpc_service_names = tuple(f"weir.v1.{base.__name__.removesuffix('Servicer')}" for _, base in servicers)

    def register(self, server: Any) -> None:
        for add, base in self._servicers:
            add(unimplemented_servicer(base, base.__name__.removesuffix("Servicer"), self._why), server)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
