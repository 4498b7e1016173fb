"""Client methods of ``EventService``: emit, read, list and subscribe.

Mixed into :class:`weir.client.AsyncWeirClient`::

    async for event in client.subscribe_events(EventFilter(event_prefixes=("weir.flow-run.",))):
        print(event.event, event.resource_id)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from weir._proto import to_timestamp
from weir.client._convert import events as ev
from weir.client._convert._common import page_request
from weir.client._grpc import Transport
from weir.client._paging import follow_pages
from weir.client.types import Event, EventFilter, Page
from weir.v1 import events_pb2 as pb
from weir.v1 import events_pb2_grpc


class EventsAPI:
    """Events: what happened to which resource, and when."""

    _transport: Transport
    _events_cache: tuple[object, Any] | None = None

    @property
    def _events_stub(self) -> Any:
        channel = self._transport.channel_for("events")
        if self._events_cache is None or self._events_cache[0] is not channel:
            self._events_cache = (channel, events_pb2_grpc.EventServiceStub(channel))
        return self._events_cache[1]

    async def emit_events(self, events: Iterable[Event]) -> int:
        """Send events to the server; returns how many it accepted.

        Resending an event with the same id is harmless: events are
        deduplicated by id.
        """
        req = pb.EmitEventsRequest(events=[ev.event_to_proto(e) for e in events])
        # Safe to retry: the server deduplicates on event id.
        resp = await self._transport.unary(self._events_stub.EmitEvents, req, idempotent=True)
        return resp.accepted

    async def list_events(
        self,
        filter: EventFilter | None = None,
        *,
        ascending: bool = False,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[Event]:
        """One page of stored events, newest first unless ``ascending``."""
        req = pb.ListEventsRequest(
            filter=ev.event_filter_to_proto(filter),
            page=page_request(page_size, page_token),
            ascending=ascending,
        )
        resp = await self._transport.unary(self._events_stub.ListEvents, req, idempotent=True)
        return Page[Event](
            items=[ev.event_from_proto(m) for m in resp.events],
            next_page_token=resp.next_page_token or None,
            total=resp.total,
        )

    def iter_events(
        self,
        filter: EventFilter | None = None,
        *,
        ascending: bool = False,
        page_size: int | None = None,
    ) -> AsyncIterator[Event]:
        return follow_pages(lambda t: self.list_events(filter, ascending=ascending, page_size=page_size, page_token=t))

    async def read_event(self, event_id: str) -> Event:
        req = pb.GetEventRequest(id=event_id)
        resp = await self._transport.unary(self._events_stub.GetEvent, req, idempotent=True)
        return ev.event_from_proto(resp.event)

    async def subscribe_events(
        self, filter: EventFilter | None = None, *, since: datetime | None = None
    ) -> AsyncIterator[Event]:
        """Live events matching ``filter``, until the caller stops iterating.

        With ``since``, events stored since then are replayed first.
        """
        req = pb.SubscribeRequest(filter=ev.event_filter_to_proto(filter))
        if since is not None:
            req.since.CopyFrom(to_timestamp(since))
        async for msg in self._transport.server_stream(self._events_stub.Subscribe, req):
            yield ev.event_from_proto(msg)
