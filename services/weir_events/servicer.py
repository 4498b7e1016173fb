"""gRPC wiring of ``weir.v1.EventService``: request → one service call → response."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from weir.v1 import common_pb2, events_pb2, events_pb2_grpc
from weir_events.emit import EventEmitter
from weir_events.reads import EventReads
from weir_events.subscriptions import Subscriptions


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, emitter: EventEmitter, reads: EventReads, subscriptions: Subscriptions) -> None:
        self.emitter = emitter
        self.reads = reads
        self.subscriptions = subscriptions

    async def EmitEvents(
        self, request: events_pb2.EmitEventsRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.EmitEventsResponse:
        return events_pb2.EmitEventsResponse(accepted=await self.emitter.emit(request.events))

    async def ListEvents(
        self, request: events_pb2.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.ListEventsResponse:
        page = await self.reads.list_events(request)
        return events_pb2.ListEventsResponse(events=page.events, next_page_token=page.next_page_token, total=page.total)

    async def GetEvent(
        self, request: events_pb2.GetEventRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.GetEventResponse:
        return events_pb2.GetEventResponse(event=await self.reads.get_event(request.id))

    async def Subscribe(
        self, request: events_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[common_pb2.Event]:
        events = self.subscriptions.subscribe(request, finished=context.done)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()
