"""The event filter: validated once, then applied as SQL (ListEvents), in
memory (Subscribe) and, where it allows, as a JetStream subject filter.

A filter matches an event when every part given matches: its name starts
with one of ``event_prefixes``; its resource or one of its related resources
has one of ``resource_ids``; it occurred in ``[after, before)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import ColumnElement, or_, select

from weir._proto import timestamp_to_datetime as proto_timestamp_to_datetime
from weir.errors import InvalidArgument
from weir.v1 import common_pb2, events_pb2
from weir_events.models import event_resources, events
from weir_kit.events import RESOURCE_ID
from weir_kit.values import short_texts

LIKE_ESCAPE = "\\"
_SUBJECT_SAFE_EXTRA = "-_"


@dataclass(frozen=True)
class EventCriteria:
    prefixes: tuple[str, ...] = ()
    resource_ids: tuple[str, ...] = ()
    after: datetime | None = None
    before: datetime | None = None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_to_datetime(ts: Timestamp) -> datetime:
    """The aware UTC datetime of ``ts`` (the epoch when unset, as protobuf's own ToDatetime)."""
    value = proto_timestamp_to_datetime(ts)
    return value if value is not None else _EPOCH


def parse_filter(message: events_pb2.EventFilter, field: str = "filter") -> EventCriteria:
    """Validate a wire filter; an inverted time range is INVALID_ARGUMENT on ``filter.occurred``."""
    after = before = None
    if message.HasField("occurred"):
        if message.occurred.HasField("after"):
            after = timestamp_to_datetime(message.occurred.after)
        if message.occurred.HasField("before"):
            before = timestamp_to_datetime(message.occurred.before)
    if after is not None and before is not None and after > before:
        raise InvalidArgument(
            f"occurred.after ({after.isoformat()}) is later than occurred.before ({before.isoformat()})",
            field=f"{field}.occurred",
        )
    for i, prefix in enumerate(message.event_prefixes):
        if not prefix:
            raise InvalidArgument("an event prefix must not be empty", field=f"{field}.event_prefixes[{i}]")
    for i, resource_id in enumerate(message.resource_ids):
        if not resource_id:
            raise InvalidArgument("a resource id must not be empty", field=f"{field}.resource_ids[{i}]")
    # No stored event holds a NUL (emitting refuses it), and Postgres refuses one in a filter.
    short_texts(message.event_prefixes, f"{field}.event_prefixes", None)
    short_texts(message.resource_ids, f"{field}.resource_ids", None)
    return EventCriteria(
        prefixes=tuple(dict.fromkeys(message.event_prefixes)),
        resource_ids=tuple(dict.fromkeys(message.resource_ids)),
        after=after,
        before=before,
    )


def escape_like(prefix: str) -> str:
    """``prefix`` as a LIKE pattern matching exactly the strings that start with it."""
    escaped = prefix.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
    return escaped.replace("_", LIKE_ESCAPE + "_") + "%"


def sql_conditions(criteria: EventCriteria) -> list[ColumnElement[bool]]:
    """WHERE conditions on ``events`` for the criteria (ANDed by the caller)."""
    conditions: list[ColumnElement[bool]] = []
    if criteria.prefixes:
        conditions.append(or_(*(events.c.event.like(escape_like(p), escape=LIKE_ESCAPE) for p in criteria.prefixes)))
    if criteria.resource_ids:
        touching = select(event_resources.c.event_id).where(event_resources.c.resource_id.in_(criteria.resource_ids))
        conditions.append(events.c.id.in_(touching))
    if criteria.after is not None:
        conditions.append(events.c.occurred >= criteria.after)
    if criteria.before is not None:
        conditions.append(events.c.occurred < criteria.before)
    return conditions


def matches(criteria: EventCriteria, event: common_pb2.Event) -> bool:
    """The same test as :func:`sql_conditions`, on one event in memory."""
    if criteria.prefixes and not event.event.startswith(criteria.prefixes):
        return False
    if criteria.resource_ids:
        ids = {event.resource.labels.get(RESOURCE_ID)} | {r.labels.get(RESOURCE_ID) for r in event.related}
        if ids.isdisjoint(criteria.resource_ids):
            return False
    if criteria.after is not None or criteria.before is not None:
        occurred = timestamp_to_datetime(event.occurred)
        if criteria.after is not None and occurred < criteria.after:
            return False
        if criteria.before is not None and occurred >= criteria.before:
            return False
    return True


def _subject_safe(token: str) -> bool:
    return bool(token) and all(c.isalnum() or c in _SUBJECT_SAFE_EXTRA for c in token)


def narrowed_subject(criteria: EventCriteria, subject_prefix: str) -> str:
    """The narrowest JetStream subject filter that still sees every matching event.

    Events are published on ``<subject_prefix>.<event name>``. With exactly one
    prefix, its complete dot-separated tokens (those before the last ``.``)
    can narrow the filter when they are plain subject tokens; anything else
    (several prefixes, wildcards, characters the publisher rewrites) falls
    back to the whole stream, and :func:`matches` does the rest.
    """
    everything = f"{subject_prefix}.>"
    if len(criteria.prefixes) != 1:
        return everything
    complete, dot, _partial = criteria.prefixes[0].rpartition(".")
    if not dot:
        return everything
    tokens = complete.split(".")
    if not all(_subject_safe(t) for t in tokens):
        return everything
    return f"{subject_prefix}.{complete}.>"
