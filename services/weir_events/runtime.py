"""The built events service: its servicer and its background loops."""

from __future__ import annotations

import grpc

from weir.v1 import events_pb2_grpc
from weir_events.emit import EventEmitter
from weir_events.persister import Persister
from weir_events.reads import EventReads
from weir_events.servicer import EventServicer
from weir_events.settings import EventsSettings
from weir_events.subscriptions import Subscriptions
from weir_kit.runtime import ServiceContext


class EventsRuntime:
    grpc_service_names = ("weir.v1.EventService",)

    def __init__(self, ctx: ServiceContext, settings: EventsSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.persister = Persister(ctx.db, ctx.nats, settings, ctx.clock)
        self.subscriptions = Subscriptions(ctx.nats, settings)
        self.servicer = EventServicer(
            EventEmitter(ctx.db, ctx.outbox, ctx.settings, ctx.clock),
            EventReads(ctx.db),
            self.subscriptions,
        )

    def register(self, server: grpc.aio.Server) -> None:
        events_pb2_grpc.add_EventServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        self.persister.start()

    async def stop(self) -> None:
        await self.persister.stop()


def build(ctx: ServiceContext, settings: EventsSettings | None = None) -> EventsRuntime:
    """The events service for ``ctx``; settings come from ``WEIR_EVENTS_*`` unless given."""
    return EventsRuntime(ctx, settings or EventsSettings())
