"""Reading persisted events: ListEvents (filtered, keyset-paged) and GetEvent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select

from weir.errors import InvalidArgument, NotFound
from weir.v1 import common_pb2, events_pb2
from weir_events.filters import parse_filter, sql_conditions
from weir_events.models import events
from weir_events.records import event_from_row
from weir_kit import paging
from weir_kit.db import Database

_BAD_TOKEN = "page_token is not a token this server issued"


@dataclass(frozen=True)
class EventPage:
    events: list[common_pb2.Event]
    next_page_token: str
    total: int


def _decode_cursor(token: str, ascending: bool) -> tuple[datetime, str] | None:
    key = paging.decode_token(token, 3)
    if key is None:
        return None
    direction, occurred, event_id = key
    if direction != ("asc" if ascending else "desc") or not isinstance(event_id, str):
        raise InvalidArgument(_BAD_TOKEN + " for this sort order", field="page.page_token")
    try:
        when = datetime.fromisoformat(occurred)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(_BAD_TOKEN, field="page.page_token") from exc
    if when.tzinfo is None:
        raise InvalidArgument(_BAD_TOKEN, field="page.page_token")
    return when, event_id


class EventReads:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_events(self, request: events_pb2.ListEventsRequest) -> EventPage:
        criteria = parse_filter(request.filter)
        size = paging.page_size(request.page.page_size)
        ascending = request.ascending
        cursor = _decode_cursor(request.page.page_token, ascending)
        conditions = sql_conditions(criteria)

        query = select(events).where(*conditions)
        if cursor is not None:
            when, last_id = cursor
            if ascending:
                after = or_(events.c.occurred > when, and_(events.c.occurred == when, events.c.id > last_id))
            else:
                after = or_(events.c.occurred < when, and_(events.c.occurred == when, events.c.id < last_id))
            query = query.where(after)
        order = (events.c.occurred, events.c.id) if ascending else (events.c.occurred.desc(), events.c.id.desc())
        query = query.order_by(*order).limit(size + 1)
        count = select(func.count()).select_from(events).where(*conditions)

        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
            total = (await session.execute(count)).scalar_one()
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            token = paging.encode_token("asc" if ascending else "desc", last.occurred.isoformat(), last.id)
        return EventPage(events=[event_from_row(r) for r in rows], next_page_token=token, total=total)

    async def get_event(self, event_id: str) -> common_pb2.Event:
        if not event_id:
            raise InvalidArgument("id is required", field="id")
        async with self.db.read() as session:
            row = (await session.execute(select(events).where(events.c.id == event_id))).first()
        if row is None:
            raise NotFound(f"event {event_id!r} not found")
        return event_from_row(row)
