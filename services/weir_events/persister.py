"""The persister: JetStream → ``events`` + ``event_resources``, and retention.

One durable pull consumer (``weir-events-persister``) shared by every replica,
so the stream is a work queue across them. Each batch is written in one
transaction with insert-or-ignore on the event id and acked after commit:
a redelivered or republished event is never stored twice. While NATS is
away, fetches fail or time out and the loop backs off; nats-py reconnects and
the durable consumer resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from weir.v1 import common_pb2
from weir_events.models import event_resources, events
from weir_events.records import event_row, invalid_reason, resource_rows
from weir_events.settings import EventsSettings
from weir_kit.clock import Clock
from weir_kit.db import Database, error_chain
from weir_kit.jetstream import Nats, ensure_stream, fetch_batch
from weir_kit.loops import Deferral, cancel_and_wait
from weir_kit.prepared import InsertIgnore, driver

log = logging.getLogger("weir.events.persister")


# SQLAlchemy's executemany spent more Python per row than all the rest of the persister.
_INSERT_EVENTS = InsertIgnore(events)
_INSERT_RESOURCES = InsertIgnore(event_resources)


async def store_events(session: AsyncSession, db: Database, batch: Sequence[common_pb2.Event], clock: Clock) -> None:
    """Insert events and their resources (in ``db.transaction()``); events already stored are left alone."""
    if not batch:
        return
    received = clock()
    await store_rows(session, [event_row(e, received) for e in batch])


async def store_rows(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``events`` rows (``records.event_row``) and their resources, ignoring stored ids."""
    rows = list({row["id"]: row for row in rows}.values())  # a message delivered twice in one batch
    drv = await driver(session)
    await _INSERT_EVENTS.run(drv, rows)
    await _INSERT_RESOURCES.run(drv, [r for row in rows for r in resource_rows(row)])


def refused_data(exc: BaseException) -> bool:
    """Whether the database refused a row's values (SQLSTATE class 22 or 23, or SQLite's
    equivalents) rather than failed: storing that row again can never succeed."""
    for cause in error_chain(exc):  # the driver's error sits under SQLAlchemy's or its adapter's
        if str(getattr(cause, "sqlstate", "") or "")[:2] in ("22", "23"):
            return True
        if isinstance(cause, sqlite3.DataError | sqlite3.IntegrityError):
            return True
    return False


async def delete_older_than(db: Database, cutoff: Any, batch_size: int) -> int:
    """Delete events (and their resource rows) that occurred before ``cutoff``."""
    deleted = 0
    while True:
        async with db.transaction() as session:
            ids = (
                (await session.execute(select(events.c.id).where(events.c.occurred < cutoff).limit(batch_size)))
                .scalars()
                .all()
            )
            if ids:
                await session.execute(delete(event_resources).where(event_resources.c.event_id.in_(ids)))
                await session.execute(delete(events).where(events.c.id.in_(ids)))
            # Resource rows whose event is gone already (or never landed) age out too.
            await session.execute(delete(event_resources).where(event_resources.c.occurred < cutoff))
        deleted += len(ids)
        if len(ids) < batch_size:
            return deleted


async def _nak(messages: Sequence[tuple[Msg, Any]]) -> None:
    for msg, _ in messages:
        await msg.nak(delay=1)


class Persister:
    """Runs the consume loop and the retention loop of one replica."""

    def __init__(self, db: Database, nats: Nats, settings: EventsSettings, clock: Clock) -> None:
        self.db = db
        self.nats = nats
        self.settings = settings
        self.clock = clock
        self.stored = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stopping = False

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume_loop(), name="events-persister"),
            asyncio.create_task(self._retention_loop(), name="events-retention"),
        ]

    async def stop(self) -> None:
        # The loops also watch a flag: a cancellation can be swallowed (see cancel_and_wait).
        self._stopping = True
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self._unsubscribe()

    def consumer_config(self) -> ConsumerConfig:
        name = self.settings.persister_consumer
        return ConsumerConfig(
            name=name,
            durable_name=name,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.persister_ack_wait_seconds,
            filter_subject=f"{self.nats.settings.events_subject_prefix}.>",
            max_ack_pending=max(self.settings.persister_batch_size * 4, 1024),
        )

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        js = self.nats.js
        kit = self.nats.settings
        await ensure_stream(js, kit, atomic=self.nats.atomic)
        config = self.consumer_config()
        # Creating an identical durable is a no-op, so every replica may do it.
        await js.add_consumer(kit.events_stream, config)
        return await js.pull_subscribe_bind(durable=config.durable_name, stream=kit.events_stream)

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # connection already gone
                log.debug("persister unsubscribe: %s", exc)

    async def _consume_loop(self) -> None:
        backoff = 0.05
        deferral = Deferral(self.nats.settings.background_defer_max_seconds)
        while not self._stopping:
            try:
                if self._sub is None:
                    self._sub = await self._subscribe()
                await deferral.turn()
                await self.consume_once(self._sub)
                backoff = 0.05
            except Exception as exc:
                if self._stopping:
                    return
                log.warning("events persister: %s; retrying in %.2fs", exc, backoff)
                # The stream or consumer may be gone (a new NATS): set them up again.
                await self._unsubscribe()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.persister_max_backoff_seconds)

    async def consume_once(self, sub: JetStreamContext.PullSubscription) -> int:
        """Fetch, store and ack one batch; returns how many events were stored.

        A message that can never be stored is terminated (logged, never redelivered)
        instead of holding up every later event: one that is not an Event or lacks
        what an event needs, one whose payload is not JSON (NaN, infinity), and one
        whose values the database refuses (Postgres text cannot hold NUL), found by
        storing the batch's rows one by one after the batch as a whole was refused.
        """
        msgs = await fetch_batch(sub, self.settings.persister_batch_size, self.settings.persister_fetch_timeout_seconds)
        if not msgs:
            return 0
        received = self.clock()
        good: list[tuple[Msg, dict[str, Any]]] = []
        for msg in msgs:
            event = common_pb2.Event()
            try:
                event.ParseFromString(msg.data)
                reason = invalid_reason(event)
                if reason is None:
                    good.append((msg, event_row(event, received)))
                    continue
            except DecodeError as exc:
                reason = f"not an Event: {exc}"
            except (ValueError, OverflowError) as exc:
                reason = f"cannot be stored: {exc}"
            await self._drop(msg, reason)
        if not good:
            return 0
        try:
            async with self.db.transaction() as session:
                await store_rows(session, [row for _, row in good])
        except Exception as exc:
            if not refused_data(exc):
                await _nak(good)
                raise
            return await self._store_one_by_one(good)
        for msg, _ in good:
            await msg.ack()
        self.stored += len(good)
        return len(good)

    async def _store_one_by_one(self, good: Sequence[tuple[Msg, dict[str, Any]]]) -> int:
        stored = 0
        for i, (msg, row) in enumerate(good):
            try:
                async with self.db.transaction() as session:
                    await store_rows(session, [row])
            except Exception as exc:
                if not refused_data(exc):
                    await _nak(good[i:])
                    raise
                await self._drop(msg, f"refused by the database: {exc}")
                continue
            await msg.ack()
            stored += 1
        self.stored += stored
        return stored

    async def _drop(self, msg: Msg, reason: str) -> None:
        log.error("dropping message %s on %s: %s", msg.metadata.sequence.stream, msg.subject, reason)
        await msg.term()

    async def retention_pass(self) -> int:
        """Delete every event older than the retention; returns how many."""
        cutoff = self.clock() - timedelta(days=self.settings.retention_days)
        deleted = await delete_older_than(self.db, cutoff, self.settings.retention_batch_size)
        if deleted:
            log.info("retention: deleted %d events older than %s", deleted, cutoff.isoformat())
        return deleted

    async def _retention_loop(self) -> None:
        while not self._stopping:
            try:
                await self.retention_pass()
            except Exception as exc:
                log.warning("events retention: %s", exc)
            await asyncio.sleep(self.settings.retention_interval_seconds)
