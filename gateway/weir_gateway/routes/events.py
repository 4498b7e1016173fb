"""GET /api/events, GET /api/events/{id}, WS /api/events/subscribe."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from weir.client.types import Event, EventFilter, Page
from weir.errors import WeirError
from weir_gateway.deps import Client, get_client
from weir_gateway.errors import ERROR_RESPONSES
from weir_gateway.routes._params import After, Before, PageSize, PageToken, time_range

router = APIRouter(tags=["events"], responses=ERROR_RESPONSES)

Prefixes = Annotated[list[str] | None, Query(description="Event name prefixes (any of).")]
ResourceIds = Annotated[list[str] | None, Query(description="Resource ids (any of).")]


@router.get("/events", response_model=Page[Event])
async def list_events(
    client: Client,
    event: Prefixes = None,
    resource: ResourceIds = None,
    occurred_after: After = None,
    occurred_before: Before = None,
    ascending: bool = False,
    page_size: PageSize = None,
    page_token: PageToken = None,
) -> Page[Event]:
    """Stored events, newest first unless ``ascending``."""
    flt = EventFilter(
        event_prefixes=tuple(event or ()),
        resource_ids=tuple(resource or ()),
        occurred=time_range(occurred_after, occurred_before),
    )
    return await client.list_events(
        flt, ascending=ascending, page_size=page_size, page_token=page_token
    )


@router.get("/events/{event_id}", response_model=Event)
async def read_event(client: Client, event_id: str) -> Event:
    return await client.read_event(event_id)


@router.websocket("/events/subscribe")
async def subscribe_events(
    websocket: WebSocket, event: Prefixes = None, resource: ResourceIds = None
) -> None:
    """Live events as JSON text frames, one event per frame."""
    flt = EventFilter(event_prefixes=tuple(event or ()), resource_ids=tuple(resource or ()))
    await websocket.accept()
    try:
        client = await get_client(websocket)  # type: ignore[arg-type]
        async for item in client.subscribe_events(flt):
            await websocket.send_text(item.model_dump_json())
    except WebSocketDisconnect:
        return
    except WeirError as exc:
        # 1011: the server hit a condition that kept it from going on.
        await websocket.close(code=1011, reason=str(exc)[:120])
