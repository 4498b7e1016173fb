"""The transactional outbox and its relay.

A service adds events to its own ``outbox`` table inside the transaction that
makes the change, so an event exists exactly when the change does. The relay
publishes rows to JetStream with ``Nats-Msg-Id`` = event id (the stream drops
duplicates inside its window), deletes them after the PubAck, and keeps them,
backing off, while NATS is away. On Postgres it claims rows with
``FOR UPDATE SKIP LOCKED`` so replicas share the work; a row published twice
(a replica died after publishing, before deleting) is dropped by the stream's
duplicate window.

A transaction that writes thousands of events (a SyncRuns batch) stores them
as one row, an ``EventBundle`` under the subject ``BUNDLE_SUBJECT``: one insert
and one delete instead of one per event. The relay publishes each event of a
bundle on its own, with its own id, as if it had had a row of its own.

The relay coalesces: after a wake-up it waits ``coalesce_seconds`` before
reading, so a burst of commits (a busy server commits hundreds of times a
second) costs one read, one round of publishes and one delete, instead of
one of each per commit competing with the requests for the write lock and
the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from weir._ids import new_id
from weir.v1 import common_pb2
from weir_kit import wire
from weir_kit.clock import utcnow
from weir_kit.db import Database, UtcDateTime
from weir_kit.events import OutgoingEvent, Packed
from weir_kit.jetstream import Nats, event_subject
from weir_kit.loops import Deferral
from weir_kit.prepared import Keyed, Prepared, driver
from weir_kit.settings import KitSettings

log = logging.getLogger("weir.outbox")


def outbox_table(metadata: MetaData) -> Table:
    """The outbox table, added to a service's own metadata."""
    return Table(
        "outbox",
        metadata,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("id", String(36), nullable=False, unique=True),
        Column("subject", String(255), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("created", UtcDateTime, nullable=False),
    )


#: The ``subject`` of a row whose ``data`` is an ``EventBundle``. Never a real subject: those
#: start with the events subject prefix (``weir.events.``).
BUNDLE_SUBJECT = "weir.outbox.bundle"


# EventBundle.packed, and PackedEvent's fields (protos/weir/v1/common.proto).
_BUNDLE_PACKED = wire.tag(2, 2)
_PACKED_ID, _PACKED_SUBJECT, _PACKED_DATA = wire.tag(1, 2), wire.tag(2, 2), wire.tag(3, 2)


def _data(event: OutgoingEvent) -> bytes:
    return event.data if isinstance(event, Packed) else event.SerializeToString()


class Outbox:
    """Writes events into the outbox; wakes the relay after commit."""

    def __init__(self, table: Table, db: Database, settings: KitSettings) -> None:
        self.table = table
        self.db = db
        self.settings = settings
        self.wakeup = asyncio.Event()
        self._insert = Prepared(insert(table), keys=["id", "subject", "data", "created"])
        # The relay's statements. Rows are deleted by the seqs it read, with one prepared
        # statement for any batch.
        oldest = select(table.c.seq, table.c.id, table.c.subject, table.c.data).order_by(table.c.seq)
        oldest = oldest.limit(bindparam("limit", type_=Integer)).offset(bindparam("offset", type_=Integer))
        self.oldest = Prepared(oldest)
        self.claim = Prepared(oldest.with_for_update(skip_locked=True))
        self.delete_seqs = Keyed(lambda listed: delete(table).where(listed), table.c.seq)
        db.add_commit_listener(self.wakeup.set)

    def rows(self, events: Sequence[OutgoingEvent]) -> list[dict[str, Any]]:
        """Outbox rows of ``events`` (for a service that folds them into a statement of its own)."""
        now, settings = utcnow(), self.settings
        return [
            {"id": e.id, "subject": event_subject(settings, e.event), "data": _data(e), "created": now} for e in events
        ]

    async def add(self, session: AsyncSession, events: Sequence[OutgoingEvent]) -> None:
        """One row per event: each can be found by its id until it is published."""
        if len(events) == 1:  # one statement, not asyncpg's executemany for a batch of one
            await (await driver(session)).execute(self._insert, self.rows(events)[0])
        elif events:
            await (await driver(session)).executemany(self._insert, self.rows(events))

    async def add_bundle(self, session: AsyncSession, events: Sequence[OutgoingEvent]) -> None:
        """All of ``events`` in one row, for a transaction that writes many.

        The row's ``id`` is the bundle's own, so the events' ids cannot be looked
        up in the outbox (``EventEmitter`` does that for one-row-per-event adds).
        """
        if len(events) <= 1:
            await self.add(session, events)
            return
        # Each event serialized once, here, with its subject: the relay forwards the bytes. The
        # bundle's ``packed`` entries are joined by hand: a PackedEvent per event through the
        # protobuf API cost as much again as building the events.
        settings, delimited, text = self.settings, wire.delimited, wire.text
        data = b"".join(
            delimited(
                _BUNDLE_PACKED,
                text(_PACKED_ID, e.id)
                + text(_PACKED_SUBJECT, event_subject(settings, e.event))
                + delimited(_PACKED_DATA, _data(e)),
            )
            for e in events
        )
        row = {"id": new_id(), "subject": BUNDLE_SUBJECT, "data": data, "created": utcnow()}
        await (await driver(session)).execute(self._insert, row)

    def messages(self, rows: Sequence[Any]) -> list[tuple[str, bytes, str]]:
        """``(subject, data, event id)`` of every event in outbox ``rows``, bundles unpacked."""
        out: list[tuple[str, bytes, str]] = []
        settings = self.settings
        for row in rows:
            if row.subject != BUNDLE_SUBJECT:
                out.append((row.subject, row.data, row.id))
                continue
            bundle = common_pb2.EventBundle.FromString(row.data)
            out.extend((p.subject, p.data, p.id) for p in bundle.packed)
            # Rows written before bundles were packed carry whole events.
            out.extend((event_subject(settings, e.event), e.SerializeToString(), e.id) for e in bundle.events)
        return out

    async def pending(self) -> int:
        """How many events wait to be published (tests, metrics)."""
        t = self.table
        async with self.db.read() as session:
            rows = (await session.execute(select(t.c.seq, t.c.id, t.c.subject, t.c.data))).all()
        return len(self.messages(rows))


class OutboxRelay:
    """Moves outbox rows to JetStream; safe to run on every replica."""

    #: After a wake-up, how long to let more commits pile up before a round.
    coalesce_seconds = 0.01

    def __init__(self, outbox: Outbox, nats: Nats, settings: KitSettings) -> None:
        self.outbox = outbox
        self.nats = nats
        self.settings = settings
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.published = 0
        #: Rounds run (read the outbox, publish, delete), empty ones included.
        self.rounds = 0
        #: Events sent without their payload, and events dropped, for being too large for NATS.
        self.truncated = 0
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.outbox.db.service}")

    async def stop(self) -> None:
        self._stopping = True
        self.outbox.wakeup.set()
        if self._task is not None:
            # Give in-flight rows one chance to leave; what stays is sent on next start.
            try:
                await asyncio.wait_for(self._task, timeout=3)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    async def _run(self) -> None:
        backoff = 0.05
        deferral = Deferral(self.settings.background_defer_max_seconds)
        while True:
            # Cleared before reading: a commit that lands during the read wakes the next round.
            self.outbox.wakeup.clear()
            try:
                await deferral.turn()
                moved = await self.relay_once()
                backoff = 0.05
            except Exception as exc:
                if self._stopping:
                    return
                log.warning("outbox relay for %s: %s; retrying in %.2fs", self.outbox.db.service, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.outbox_max_backoff_seconds)
                continue
            if moved >= self.settings.outbox_batch_size:
                continue  # more waiting
            if self._stopping:
                return
            try:
                await asyncio.wait_for(self.outbox.wakeup.wait(), self.settings.outbox_poll_interval_seconds)
            except TimeoutError:
                continue
            if not self._stopping:
                await asyncio.sleep(self.coalesce_seconds)

    async def relay_once(self) -> int:
        """Publish one batch; returns how many rows left the outbox."""
        self.rounds += 1
        db = self.outbox.db
        batch = {"limit": self.settings.outbox_batch_size, "offset": 0}
        if db.is_postgres:
            # Not a commit to tell the relay about: it would wake itself after every round and
            # spin (hundreds of empty transactions a second per service, a third of a core idle).
            async with db.transaction(notify=False) as session:
                drv = await driver(session)
                rows = await drv.fetch(self.outbox.claim, batch)
                if rows:
                    await self._publish(rows)
                    await self.outbox.delete_seqs.execute(drv, [r.seq for r in rows])
            return len(rows)
        # SQLite: read on the write connection (statements run on the loop's thread, no hop to
        # a reader thread and back), but don't hold the write lock while publishing.
        async with db.transaction(notify=False) as session:
            rows = await (await driver(session)).fetch(self.outbox.oldest, batch)
        if rows:
            await self._publish(rows)
            async with db.transaction() as session:
                await self.outbox.delete_seqs.execute(await driver(session), [r.seq for r in rows])
        return len(rows)

    async def _publish(self, rows: Sequence[Any]) -> None:
        if not self.nats.client.is_connected:
            raise ConnectionError("NATS is not connected")
        messages = self._fit(self.outbox.messages(rows))
        size = self.settings.outbox_batch_size
        for start in range(0, len(messages), size):  # a bundle may hold thousands: a bounded number of acks at a time
            await self.nats.publish_batch(messages[start : start + size])
        self.published += len(messages)

    def _fit(self, messages: list[tuple[str, bytes, str]]) -> list[tuple[str, bytes, str]]:
        """The messages, each one small enough for NATS.

        An event larger than the server takes (a state with a message of megabytes) would
        be refused at every try and hold up every event behind it: it goes without its
        payload instead, which says so (``weir.truncated``, ``weir.original_bytes``). One
        too large even then (thousands of related resources) is dropped, logged.
        """
        limit = self.nats.max_data
        if all(len(data) <= limit for _, data, _ in messages):
            return messages
        fitted = []
        for subject, data, event_id in messages:
            if len(data) <= limit:
                fitted.append((subject, data, event_id))
                continue
            smaller = _without_payload(data)
            if len(smaller) > limit:
                log.error(
                    "event %s (%d bytes) is too large for NATS even without its payload: dropped", event_id, len(data)
                )
                self.dropped += 1
                continue
            log.warning("event %s (%d bytes) is too large for NATS: sent without its payload", event_id, len(data))
            self.truncated += 1
            fitted.append((subject, smaller, event_id))
        return fitted


def _without_payload(data: bytes) -> bytes:
    """The serialized event ``data`` with its payload replaced by a note of what it was."""
    event = common_pb2.Event.FromString(data)
    event.payload.Clear()
    event.payload.update({"weir.truncated": True, "weir.original_bytes": len(data)})
    return event.SerializeToString()
