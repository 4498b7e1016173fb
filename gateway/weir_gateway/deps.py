"""Request dependencies: the one shared client of the app."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request


async def get_client(request: Request) -> Any:
    """The app's AsyncWeirClient, created on first use inside the server's loop."""
    state = request.app.state
    if getattr(state, "weir_client", None) is None:
        state.weir_client = state.weir_client_factory()
    return state.weir_client


#: Annotate a route parameter with this to receive the client.
Client = Annotated[Any, Depends(get_client)]
