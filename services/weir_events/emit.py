"""EmitEvents: events from clients enter the outbox like every other event.

They are validated, completed (id, occurred) and written to this service's
outbox in one transaction; the outbox relay publishes them to JetStream and
the persister stores them, the same path every service's events take.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from weir.errors import InvalidArgument
from weir.v1 import common_pb2
from weir_events.models import ID
from weir_events.records import payload_dict
from weir_kit.clock import Clock
from weir_kit.db import Database
from weir_kit.events import RESOURCE_ID
from weir_kit.jetstream import event_subject
from weir_kit.outbox import Outbox
from weir_kit.settings import KitSettings

#: The outbox's subject column holds at most this much.
_MAX_SUBJECT = 255


def prepare(events: Sequence[common_pb2.Event], settings: KitSettings, clock: Clock) -> list[common_pb2.Event]:
    """Validated copies of ``events`` with id and occurred filled in."""
    now = clock()
    prepared: list[common_pb2.Event] = []
    for i, original in enumerate(events):
        event = common_pb2.Event()
        event.CopyFrom(original)
        if not event.event.strip():
            raise InvalidArgument("event name must not be empty", field=f"events[{i}].event")
        if len(event_subject(settings, event.event)) > _MAX_SUBJECT:
            raise InvalidArgument("event name is too long", field=f"events[{i}].event")
        if not event.resource.labels.get(RESOURCE_ID):
            raise InvalidArgument(f"resource must carry a {RESOURCE_ID!r} label", field=f"events[{i}].resource")
        for j, related in enumerate(event.related):
            if not related.labels.get(RESOURCE_ID):
                raise InvalidArgument(
                    f"related resource must carry a {RESOURCE_ID!r} label", field=f"events[{i}].related[{j}]"
                )
        _check_storable(event, f"events[{i}]")
        if len(event.id) > ID:
            raise InvalidArgument(f"id must be at most {ID} characters", field=f"events[{i}].id")
        if not event.id:
            event.id = str(uuid.uuid4())
        if not event.HasField("occurred"):
            event.occurred.FromDatetime(now)
        event.ClearField("received")
        prepared.append(event)
    return prepared


def _check_storable(event: common_pb2.Event, field: str) -> None:
    """Refuse what the persister could never store: a payload that is not JSON (NaN,
    infinity) and text with NUL characters (Postgres text and JSON cannot hold them)."""
    try:
        payload = payload_dict(event.payload) if event.HasField("payload") else {}
    except ValueError as exc:
        raise InvalidArgument(f"payload is not JSON: {exc}", field=f"{field}.payload") from None
    parts = {
        "event": event.event,
        "id": event.id,
        "follows": event.follows,
        "resource": dict(event.resource.labels),
        "related": [dict(r.labels) for r in event.related],
        "payload": payload,
    }
    for name, value in parts.items():
        if _has_nul(value):
            raise InvalidArgument(f"{name} contains a NUL character", field=f"{field}.{name}")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class EventEmitter:
    def __init__(self, db: Database, outbox: Outbox, settings: KitSettings, clock: Clock) -> None:
        self.db = db
        self.outbox = outbox
        self.settings = settings
        self.clock = clock

    async def emit(self, events: Sequence[common_pb2.Event]) -> int:
        """Accept ``events``; returns how many were accepted.

        A client retrying with the same event ids is harmless: ids still in
        the outbox are skipped here, ids already published are dropped by the
        stream's duplicate window, and the persister ignores ids it has stored.
        """
        prepared = list({e.id: e for e in prepare(events, self.settings, self.clock)}.values())
        if not prepared:
            return 0
        table = self.outbox.table
        async with self.db.transaction() as session:
            pending = set(
                (await session.execute(select(table.c.id).where(table.c.id.in_([e.id for e in prepared]))))
                .scalars()
                .all()
            )
            await self.outbox.add(session, [e for e in prepared if e.id not in pending])
        return len(events)
