"""The event filter: validation, LIKE escaping, SQL, in-memory matching and
JetStream subject narrowing agree with each other."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.dialects import postgresql, sqlite

from weir.errors import InvalidArgument
from weir.v1 import common_pb2, events_pb2
from weir_events.filters import (
    EventCriteria,
    escape_like,
    matches,
    narrowed_subject,
    parse_filter,
    sql_conditions,
)
from weir_kit.events import new_event, resource
from weir_kit.jetstream import event_subject
from weir_kit.settings import KitSettings

T0 = datetime(2030, 1, 1, tzinfo=UTC)
PREFIX = "weir.events"


def ts(when: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def test_inverted_time_range_names_filter_occurred() -> None:
    message = events_pb2.EventFilter(occurred=common_pb2.TimeRange(after=ts(T0), before=ts(T0 - timedelta(1))))
    with pytest.raises(InvalidArgument) as info:
        parse_filter(message)
    assert info.value.field == "filter.occurred"


def test_empty_range_edges_and_open_ends_are_fine() -> None:
    same = parse_filter(events_pb2.EventFilter(occurred=common_pb2.TimeRange(after=ts(T0), before=ts(T0))))
    assert same.after == same.before == T0
    open_end = parse_filter(events_pb2.EventFilter(occurred=common_pb2.TimeRange(after=ts(T0))))
    assert open_end.after == T0 and open_end.before is None
    assert parse_filter(events_pb2.EventFilter()) == EventCriteria()


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (events_pb2.EventFilter(event_prefixes=["ok", ""]), "filter.event_prefixes[1]"),
        (events_pb2.EventFilter(resource_ids=[""]), "filter.resource_ids[0]"),
    ],
)
def test_empty_entries_are_refused_by_field(message, field) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter(message)
    assert info.value.field == field


def test_duplicates_are_dropped_in_order() -> None:
    criteria = parse_filter(events_pb2.EventFilter(event_prefixes=["b", "a", "b"], resource_ids=["x", "x"]))
    assert criteria.prefixes == ("b", "a")
    assert criteria.resource_ids == ("x",)


@pytest.mark.parametrize(
    ("prefix", "name", "expected"),
    [
        ("weir.flow", "weir.flow-run.Completed", True),
        ("weir_flow", "weir.flow-run.Completed", False),
        ("100%", "100%done", True),
        ("100%", "100 done", False),
        ("a\\b", "a\\b.c", True),
        ("a\\b", "ab.c", False),
        ("a_", "ab", False),
    ],
)
def test_like_pattern_matches_exactly_the_prefix(prefix, name, expected) -> None:
    conn = sqlite3.connect(":memory:")
    (result,) = conn.execute("SELECT ? LIKE ? ESCAPE '\\'", (name, escape_like(prefix))).fetchone()
    assert bool(result) is expected
    assert name.startswith(prefix) is expected


def test_sql_uses_escaped_like_and_resource_subquery() -> None:
    criteria = parse_filter(
        events_pb2.EventFilter(
            event_prefixes=["a_b"],
            resource_ids=["r1"],
            occurred=common_pb2.TimeRange(after=ts(T0), before=ts(T0 + timedelta(1))),
        )
    )
    conditions = sql_conditions(criteria)
    assert len(conditions) == 4
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = [str(c.compile(dialect=dialect)) for c in conditions]
        assert "LIKE" in compiled[0] and "ESCAPE" in compiled[0]
        assert "event_resources" in compiled[1]
        assert ">=" in compiled[2] and "<" in compiled[3]
    like = conditions[0].compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    assert "'a\\_b%'" in str(like)


def _event(name: str, resource_id: str = "r0", *, related: tuple[str, ...] = (), occurred: datetime = T0):
    return new_event(name, resource(resource_id), occurred=occurred, related=[resource(r, role="x") for r in related])


def test_matches_like_the_sql() -> None:
    criteria = EventCriteria(prefixes=("weir.flow-run.",), resource_ids=("r1",), after=T0, before=T0 + timedelta(1))
    assert matches(criteria, _event("weir.flow-run.Completed", "r1"))
    assert matches(criteria, _event("weir.flow-run.Completed", related=("r2", "r1")))
    assert not matches(criteria, _event("weir.task-run.Completed", "r1"))
    assert not matches(criteria, _event("weir.flow-run.Completed", "r2"))
    assert not matches(criteria, _event("weir.flow-run.Completed", "r1", occurred=T0 - timedelta(seconds=1)))
    assert not matches(criteria, _event("weir.flow-run.Completed", "r1", occurred=T0 + timedelta(1)))
    assert matches(EventCriteria(), _event("anything"))


@pytest.mark.parametrize(
    ("prefixes", "subject"),
    [
        ((), f"{PREFIX}.>"),
        (("weir.flow-run.",), f"{PREFIX}.weir.flow-run.>"),
        (("weir.flow-run.Comp",), f"{PREFIX}.weir.flow-run.>"),
        (("weir.flow-run",), f"{PREFIX}.weir.>"),
        (("weir",), f"{PREFIX}.>"),
        (("a.b", "c.d"), f"{PREFIX}.>"),
        (("a*.b",), f"{PREFIX}.>"),
        (("a>.b",), f"{PREFIX}.>"),
        (("a b.c",), f"{PREFIX}.>"),
        (("a..b",), f"{PREFIX}.>"),
        ((".a",), f"{PREFIX}.>"),
    ],
)
def test_subject_narrowing(prefixes, subject) -> None:
    assert narrowed_subject(EventCriteria(prefixes=prefixes), PREFIX) == subject


@pytest.mark.parametrize(
    ("prefix", "name"),
    [
        ("weir.flow-run.", "weir.flow-run.Completed"),
        ("weir.flow-run.Comp", "weir.flow-run.Completed"),
        ("weir.flow", "weir.flow-run.Completed"),
        ("weir.x.", "weir.x.has spaces*and>wildcards"),
        ("weir.x.", "weir.x..double.dot"),
    ],
)
def test_narrowed_subject_still_sees_every_matching_event(prefix, name) -> None:
    settings = KitSettings(events_subject_prefix=PREFIX)
    subject_filter = narrowed_subject(EventCriteria(prefixes=(prefix,)), PREFIX)
    assert name.startswith(prefix)
    assert _subject_matches(subject_filter, event_subject(settings, name))


def _subject_matches(pattern: str, subject: str) -> bool:
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(got) == len(want)
