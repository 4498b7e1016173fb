"""Servicers for services whose RPCs are declared but not built yet.

Every RPC answers UNIMPLEMENTED with a message that says so, instead of the
generated "Method not implemented!". This is scaffolding, not a feature.
"""

from __future__ import annotations

import inspect
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
