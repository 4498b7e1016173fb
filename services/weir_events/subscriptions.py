"""Live subscriptions: one ephemeral JetStream consumer per Subscribe stream.

The consumer has no durable name, lives in memory, starts at ``since``
(replaying the stream) or at new messages, and narrows its subject filter
when the event filter allows; the full filter is applied here per event.
When the client goes away the stream's task is cancelled and the consumer is
deleted in a ``finally``; if this server dies instead, the consumer's
``inactive_threshold`` removes it. So a subscriber killed with SIGKILL leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from weir.errors import Unavailable
from weir.v1 import common_pb2, events_pb2
from weir_events.filters import EventCriteria, matches, narrowed_subject, parse_filter, timestamp_to_datetime
from weir_events.persister import fetch_batch
from weir_events.settings import EventsSettings
from weir_kit.jetstream import Nats

log = logging.getLogger("weir.events.subscriptions")

#: How long the clean-up of a finished subscription may take.
_CLEANUP_TIMEOUT = 2.0


class Subscriptions:
    def __init__(self, nats: Nats, settings: EventsSettings) -> None:
        self.nats = nats
        self.settings = settings
        #: Names of the consumers of the streams open right now.
        self.active: set[str] = set()

    def consumer_config(self, request: events_pb2.SubscribeRequest, criteria: EventCriteria) -> ConsumerConfig:
        config = ConsumerConfig(
            name=f"weir-sub-{uuid.uuid4().hex}",
            ack_policy=AckPolicy.NONE,
            filter_subject=narrowed_subject(criteria, self.nats.settings.events_subject_prefix),
            inactive_threshold=self.settings.subscriber_inactive_threshold_seconds,
            mem_storage=True,
            num_replicas=1,
        )
        if request.HasField("since"):
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = timestamp_to_datetime(request.since)
        else:
            config.deliver_policy = DeliverPolicy.NEW
        return config

    async def subscribe(
        self, request: events_pb2.SubscribeRequest, finished: Callable[[], bool] = lambda: False
    ) -> AsyncIterator[common_pb2.Event]:
        """Events matching the request's filter until the caller stops iterating.

        ``finished`` reports whether the RPC is over. It and the task's pending
        cancellations are checked after every fetch, so the consumer goes even
        when a cancellation was swallowed (``asyncio.wait_for`` on Python 3.11
        can return a result that completed at the moment it was cancelled).
        """
        criteria = parse_filter(request.filter)
        js = self.nats.js
        stream = self.nats.settings.events_stream
        config = self.consumer_config(request, criteria)
        name = config.name or ""
        try:
            await js.add_consumer(stream, config)
            sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
        except Exception as exc:
            raise Unavailable(f"the events stream is unavailable: {exc}") from exc
        self.active.add(name)
        task = asyncio.current_task()
        try:
            while not finished() and not (task is not None and task.cancelling()):
                try:
                    msgs = await fetch_batch(
                        sub, self.settings.subscriber_batch_size, self.settings.subscriber_fetch_timeout_seconds
                    )
                except Exception as exc:
                    # The consumer is gone (NATS restarted) or NATS refuses: let the client resubscribe.
                    raise Unavailable(f"the events stream is unavailable: {exc}") from exc
                for msg in msgs:
                    event = common_pb2.Event()
                    try:
                        event.ParseFromString(msg.data)
                    except Exception:
                        log.warning("skipping a message on %s that is not an Event", msg.subject)
                        continue
                    if matches(criteria, event):
                        yield event
        finally:
            self.active.discard(name)
            await asyncio.shield(self._cleanup(sub, name))

    async def _cleanup(self, sub: object, name: str) -> None:
        try:
            async with asyncio.timeout(_CLEANUP_TIMEOUT):
                await sub.unsubscribe()  # type: ignore[attr-defined]
                await self.nats.js.delete_consumer(self.nats.settings.events_stream, name)
        except NotFoundError:
            pass
        except Exception as exc:  # NATS away: inactive_threshold removes it later
            log.warning("subscription %s clean-up: %r", name, exc)
