"""Schedules: parsing errors name the field; occurrences across DST, checked
against explicit examples and, with hypothesis, against an oracle written
from the rules in the module docstring (not from croniter)."""

from __future__ import annotations

import math
import time as clock
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st

from weir.errors import InvalidArgument
from weir.v1 import deployments_pb2
from weir_deployments.schedules import ScheduleSpec, occurrences, parse_schedule, schedule_to_proto

ZONES = ["America/New_York", "Europe/London", "Australia/Sydney"]
NY = ZoneInfo("America/New_York")
BIG = 100_000
FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None)


def sched(**kwargs: object) -> ScheduleSpec:
    return parse_schedule(deployments_pb2.Schedule(active=True, **kwargs))  # type: ignore[arg-type]


def local(t: datetime, zone: str | ZoneInfo) -> str:
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def transition_days(zone: ZoneInfo, years: range = range(2024, 2026)) -> list[date]:
    """Local days whose midnight-to-midnight UTC offset changes."""
    out = []
    day = date(years.start, 1, 1)
    while day.year < years.stop:
        nxt = day + timedelta(days=1)
        if datetime.combine(day, time(), zone).utcoffset() != datetime.combine(nxt, time(), zone).utcoffset():
            out.append(day)
        day = nxt
    return out


TRANSITIONS = {name: transition_days(ZoneInfo(name)) for name in ZONES}


def test_transition_table_has_spring_and_fall_in_each_zone() -> None:
    assert all(len(days) == 4 for days in TRANSITIONS.values()), TRANSITIONS
    assert date(2024, 3, 10) in TRANSITIONS["America/New_York"]
    assert date(2024, 10, 6) in TRANSITIONS["Australia/Sydney"]


# -- parse_schedule


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({}, "schedules[2]", "needs one of interval_seconds, cron or rrule"),
        ({"interval_seconds": 0}, "schedules[2].interval_seconds", "at least 1 second"),
        ({"interval_seconds": -60}, "schedules[2].interval_seconds", "got -60"),
        ({"interval_seconds": 0.5}, "schedules[2].interval_seconds", "at least 1 second"),
        ({"interval_seconds": math.nan}, "schedules[2].interval_seconds", "got nan"),
        ({"interval_seconds": math.inf}, "schedules[2].interval_seconds", "got inf"),
        ({"interval_seconds": 1e12}, "schedules[2].interval_seconds", "at most 100 years"),
        ({"cron": ""}, "schedules[2].cron", "invalid cron expression '': it is empty"),
        ({"cron": "* * *"}, "schedules[2].cron", "invalid cron expression '* * *': a cron expression has 5 fields"),
        ({"cron": "0 9 * * * 5"}, "schedules[2].cron", "5 fields (minute hour day-of-month month day-of-week), got 6"),
        ({"cron": "61 * * * *"}, "schedules[2].cron", "invalid cron expression '61 * * * *'"),
        ({"cron": "0 0 30 2 *"}, "schedules[2].cron", "never matches a date"),
        ({"cron": "R 9 * * *"}, "schedules[2].cron", "random 'R' fields are not supported"),
        ({"cron": "@reboot"}, "schedules[2].cron", "unknown alias"),
        ({"rrule": ""}, "schedules[2].rrule", "it is empty"),
        ({"rrule": "garbage"}, "schedules[2].rrule", "invalid rrule 'garbage'"),
        ({"rrule": "FREQ=FORTNIGHTLY"}, "schedules[2].rrule", "invalid 'FREQ': FORTNIGHTLY"),
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "schedules[2].rrule", "never produces a time"),
        (
            {"rrule": "DTSTART:20240101T090000\nRRULE:FREQ=DAILY;UNTIL=20230101T000000"},
            "schedules[2].rrule",
            "never produces a time",
        ),
        (
            {
                "rrule": "DTSTART;TZID=Europe/London:20240101T090000\nRRULE:FREQ=DAILY",
                "timezone": "America/New_York",
            },
            "schedules[2].rrule",
            "TZID 'Europe/London' conflicts with timezone 'America/New_York'",
        ),
        (
            {"rrule": "DTSTART;TZID=Mars/Base:20240101T090000\nRRULE:FREQ=DAILY"},
            "schedules[2].rrule",
            "unknown time zone 'Mars/Base'",
        ),
        (
            {"cron": "0 9 * * *", "timezone": "Mars/Olympus"},
            "schedules[2].timezone",
            "unknown time zone 'Mars/Olympus'",
        ),
        ({"interval_seconds": 60, "timezone": "../etc/passwd"}, "schedules[2].timezone", "unknown time zone"),
    ],
)
def test_invalid_schedules_name_the_field(kwargs: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_schedule(deployments_pb2.Schedule(**kwargs), field="schedules[2]")  # type: ignore[arg-type]
    assert info.value.field == field
    assert fragment in info.value.message


def test_parse_fills_defaults_and_normalises() -> None:
    spec = parse_schedule(deployments_pb2.Schedule(cron=" 0   9 * * mon-fri "))
    assert spec == ScheduleSpec("cron", None, "0 9 * * mon-fri", None, None, "UTC", False)
    interval = sched(interval_seconds=90.5, timezone="Europe/London")
    assert (interval.kind, interval.interval, interval.timezone, interval.active) == (
        "interval",
        timedelta(seconds=90.5),
        "Europe/London",
        True,
    )


def test_aliases_are_accepted() -> None:
    after = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    assert occurrences(sched(cron="@hourly"), after, after + timedelta(hours=2), 5) == [
        datetime(2024, 5, 1, 11, tzinfo=UTC),
        datetime(2024, 5, 1, 12, tzinfo=UTC),
    ]
    assert occurrences(sched(cron="@daily"), after, after + timedelta(days=1), 5) == [datetime(2024, 5, 2, tzinfo=UTC)]


def test_rrule_tzid_becomes_the_zone_when_none_is_given() -> None:
    spec = sched(rrule="DTSTART;TZID=America/New_York:20240101T090000\nRRULE:FREQ=DAILY")
    assert spec.timezone == "America/New_York"
    got = occurrences(spec, datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 7, 2, tzinfo=UTC), 5)
    assert [local(t, NY) for t in got] == ["2024-07-01 09:00 EDT"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval_seconds": 3600.25, "anchor": datetime(2024, 1, 1, 9, 30, 0, 123000, tzinfo=UTC)},
        {"interval_seconds": 86400, "timezone": "America/New_York", "active": False},
        {"cron": "*/15 9-17 * * 1-5", "timezone": "Australia/Sydney"},
        {"rrule": "FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=9", "anchor": datetime(2024, 1, 1, tzinfo=UTC)},
    ],
)
def test_schedule_to_proto_round_trips(kwargs: dict[str, object]) -> None:
    kwargs = dict(kwargs)
    if "anchor" in kwargs:
        msg = deployments_pb2.Schedule()
        msg.anchor.FromDatetime(kwargs.pop("anchor"))  # type: ignore[arg-type]
        msg.MergeFrom(deployments_pb2.Schedule(**kwargs))  # type: ignore[arg-type]
    else:
        msg = deployments_pb2.Schedule(**kwargs)  # type: ignore[arg-type]
    spec = parse_schedule(msg)
    back = schedule_to_proto(spec, schedule_id="s-1")
    assert back.id == "s-1"
    assert parse_schedule(back) == spec
    assert back.HasField("anchor") == (spec.anchor is not None)


def test_key_is_the_definition_not_the_switch() -> None:
    base = sched(cron="0 9 * * *", timezone="Europe/London")
    assert base.key() == parse_schedule(deployments_pb2.Schedule(cron="0  9 * * *", timezone="Europe/London")).key()
    keys = {
        base.key(),
        sched(cron="0 10 * * *", timezone="Europe/London").key(),
        sched(cron="0 9 * * *", timezone="Europe/Paris").key(),
        sched(interval_seconds=60).key(),
        sched(interval_seconds=61).key(),
        sched(rrule="FREQ=HOURLY").key(),
    }
    assert len(keys) == 6
    anchored = deployments_pb2.Schedule(interval_seconds=60)
    anchored.anchor.FromDatetime(datetime(2024, 1, 1, 0, 0, 30))  # noqa: DTZ001 - protobuf reads naive as UTC
    assert parse_schedule(anchored).key() != sched(interval_seconds=60).key()
    cron_anchored = deployments_pb2.Schedule(cron="0 9 * * *", timezone="Europe/London")
    cron_anchored.anchor.FromDatetime(datetime(2024, 1, 1))  # noqa: DTZ001
    assert parse_schedule(cron_anchored).key() == base.key()  # cron does not use the anchor


# -- occurrences: window, limit, input


def test_window_is_after_exclusive_until_inclusive_and_limited() -> None:
    spec = sched(cron="0 9 * * *")
    day1 = datetime(2024, 5, 1, 9, tzinfo=UTC)
    assert occurrences(spec, day1, day1 + timedelta(days=2), 10) == [
        day1 + timedelta(days=1),
        day1 + timedelta(days=2),
    ]
    assert occurrences(spec, day1, day1 + timedelta(days=5), 2) == [
        day1 + timedelta(days=1),
        day1 + timedelta(days=2),
    ]
    assert occurrences(spec, day1, day1 + timedelta(days=5), 0) == []
    assert occurrences(spec, day1, day1, 10) == []
    # Any zone in, UTC out.
    got = occurrences(spec, day1.astimezone(NY), (day1 + timedelta(days=1)).astimezone(NY), 10)
    assert got == [day1 + timedelta(days=1)]
    assert got[0].tzinfo is UTC


def test_naive_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        occurrences(sched(cron="0 9 * * *"), datetime(2024, 1, 1), datetime(2024, 1, 2, tzinfo=UTC), 5)  # noqa: DTZ001


# -- occurrences: DST, by example
# (zone, spring day, a skipped wall time, fall day, a repeated wall time)
DST_CASES = [
    ("America/New_York", date(2024, 3, 10), time(2, 30), date(2024, 11, 3), time(1, 30)),
    ("Europe/London", date(2024, 3, 31), time(1, 30), date(2024, 10, 27), time(1, 30)),
    ("Australia/Sydney", date(2024, 10, 6), time(2, 30), date(2024, 4, 7), time(2, 30)),
]


def _daily(kind: str, at: time, zone: str) -> ScheduleSpec:
    if kind == "cron":
        return sched(cron=f"{at.minute} {at.hour} * * *", timezone=zone)
    if kind == "rrule":
        return sched(rrule=f"FREQ=DAILY;BYHOUR={at.hour};BYMINUTE={at.minute};BYSECOND=0", timezone=zone)
    msg = deployments_pb2.Schedule(interval_seconds=86400, timezone=zone)
    msg.anchor.FromDatetime(datetime(2023, 6, 15, at.hour, at.minute, tzinfo=ZoneInfo(zone)).astimezone(UTC))
    return parse_schedule(msg)


def _day_window(day: date, zone: ZoneInfo, before: int = 1, after: int = 1) -> tuple[datetime, datetime]:
    """(midnight before ``day - before``, midnight ending ``day + after``] as instants, minus 1 µs."""
    start = datetime.combine(day - timedelta(days=before), time(), zone) - timedelta(microseconds=1)
    end = datetime.combine(day + timedelta(days=after + 1), time(), zone) - timedelta(microseconds=1)
    return start, end


@pytest.mark.parametrize("kind", ["cron", "rrule", "interval"])
@pytest.mark.parametrize(("zone_name", "spring", "skipped", "fall", "repeated"), DST_CASES)
def test_daily_at_a_skipped_time_runs_once_shifted_forward(
    kind: str, zone_name: str, spring: date, skipped: time, fall: date, repeated: time
) -> None:
    zone = ZoneInfo(zone_name)
    got = occurrences(_daily(kind, skipped, zone_name), *_day_window(spring, zone), 10)
    walls = [t.astimezone(zone) for t in got]
    assert [w.date() for w in walls] == [spring - timedelta(days=1), spring, spring + timedelta(days=1)]
    assert [w.time() for w in walls] == [skipped, skipped.replace(hour=skipped.hour + 1), skipped]


@pytest.mark.parametrize("kind", ["cron", "rrule", "interval"])
@pytest.mark.parametrize(("zone_name", "spring", "skipped", "fall", "repeated"), DST_CASES)
def test_daily_at_a_repeated_time_runs_once_at_the_first(
    kind: str, zone_name: str, spring: date, skipped: time, fall: date, repeated: time
) -> None:
    zone = ZoneInfo(zone_name)
    got = occurrences(_daily(kind, repeated, zone_name), *_day_window(fall, zone), 10)
    walls = [t.astimezone(zone) for t in got]
    assert [(w.date(), w.time()) for w in walls] == [(fall + timedelta(days=d), repeated) for d in (-1, 0, 1)]
    summer_offset = datetime.combine(fall - timedelta(days=1), time(12), zone).utcoffset()
    assert walls[1].utcoffset() == summer_offset  # the first of the two 01:30s


@pytest.mark.parametrize(("zone_name", "spring", "skipped", "fall", "repeated"), DST_CASES)
def test_hourly_cron_fires_once_per_wall_clock_hour(
    zone_name: str, spring: date, skipped: time, fall: date, repeated: time
) -> None:
    zone = ZoneInfo(zone_name)
    spec = sched(cron="0 * * * *", timezone=zone_name)
    spring_runs = occurrences(spec, *_day_window(spring, zone, 0, 0), 100)
    fall_runs = occurrences(spec, *_day_window(fall, zone, 0, 0), 100)
    # 23-hour day: the skipped hour shifts onto the next, which fires once.
    assert len(spring_runs) == 23
    assert sorted({t.astimezone(zone).hour for t in spring_runs}) == [h for h in range(24) if h != skipped.hour]
    # 25-hour day: 24 wall-clock hours, the repeated one at its first pass only.
    assert len(fall_runs) == 24
    assert Counter(t.astimezone(zone).hour for t in fall_runs) == Counter(range(24))
    gaps = {b - a for a, b in pairwise(fall_runs)}
    assert gaps == {timedelta(hours=1), timedelta(hours=2)}


@pytest.mark.parametrize(("zone_name", "spring", "skipped", "fall", "repeated"), DST_CASES)
def test_hourly_interval_is_elapsed_time(
    zone_name: str, spring: date, skipped: time, fall: date, repeated: time
) -> None:
    zone = ZoneInfo(zone_name)
    spec = sched(interval_seconds=3600, timezone=zone_name)
    for day, hours in ((spring, 23), (fall, 25)):
        runs = occurrences(spec, *_day_window(day, zone, 0, 0), 100)
        assert len(runs) == hours
        assert {b - a for a, b in pairwise(runs)} == {timedelta(hours=1)}


def test_skipped_times_that_land_on_real_matches_fire_once_in_order() -> None:
    got = occurrences(
        sched(cron="15,45 2,3 * * *", timezone="America/New_York"),
        datetime(2024, 3, 10, tzinfo=NY),
        datetime(2024, 3, 10, 5, tzinfo=NY),
        10,
    )
    assert [local(t, NY) for t in got] == ["2024-03-10 03:15 EDT", "2024-03-10 03:45 EDT"]


def test_a_skipped_time_just_before_the_window_lands_inside_it() -> None:
    # 02:30 does not exist on 2024-03-10; it fires at 03:30 EDT, after a cursor at 03:10 EDT.
    spec = sched(cron="30 2 * * *", timezone="America/New_York")
    got = occurrences(spec, datetime(2024, 3, 10, 3, 10, tzinfo=NY), datetime(2024, 3, 10, 4, tzinfo=NY), 5)
    assert [local(t, NY) for t in got] == ["2024-03-10 03:30 EDT"]


def test_a_repeated_time_after_the_wall_time_of_until_is_inside_it() -> None:
    # until = 01:30 EST, the second 01:30; 01:45 fires at its first pass (EDT), before until.
    spec = sched(cron="45 1 * * *", timezone="America/New_York")
    until = datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NY)
    got = occurrences(spec, datetime(2024, 11, 3, tzinfo=NY), until, 5)
    assert [local(t, NY) for t in got] == ["2024-11-03 01:45 EDT"]
    assert got[0] < until


def test_the_limit_keeps_the_earliest_when_a_skipped_time_shifts_past_a_real_one() -> None:
    # Wall order 02:50 (skipped: fires 03:50 EDT), then 03:10 EDT: the first in time is the later wall.
    spec = sched(
        rrule="RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=50;BYSECOND=0\nRDATE:20240310T031000", timezone="America/New_York"
    )
    after, until = datetime(2024, 3, 10, tzinfo=NY), datetime(2024, 3, 10, 5, tzinfo=NY)
    assert [local(t, NY) for t in occurrences(spec, after, until, 5)] == [
        "2024-03-10 03:10 EDT",
        "2024-03-10 03:50 EDT",
    ]
    assert [local(t, NY) for t in occurrences(spec, after, until, 1)] == ["2024-03-10 03:10 EDT"]


def test_a_skipped_day_runs_once_on_the_next() -> None:
    # Samoa skipped 2011-12-30 entirely (UTC-10 -> UTC+14).
    apia = ZoneInfo("Pacific/Apia")
    got = occurrences(
        sched(cron="0 9 * * *", timezone="Pacific/Apia"),
        datetime(2011, 12, 28, 12, tzinfo=apia),
        datetime(2012, 1, 1, 12, tzinfo=apia),
        10,
    )
    assert [local(t, apia) for t in got] == ["2011-12-29 09:00 -10", "2011-12-31 09:00 +14", "2012-01-01 09:00 +14"]


def test_rrule_times_in_text_are_wall_times_of_the_zone() -> None:
    spec = sched(
        rrule="DTSTART:20240309T013000Z\nRRULE:FREQ=DAILY;UNTIL=20240312T013000Z\nEXDATE:20240310T013000",
        timezone="America/New_York",
    )
    got = occurrences(spec, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC), 10)
    assert [local(t, NY) for t in got] == ["2024-03-09 01:30 EST", "2024-03-11 01:30 EDT", "2024-03-12 01:30 EDT"]


# -- occurrences: no stepping from the anchor


def test_interval_jumps_to_the_window() -> None:
    spec = sched(interval_seconds=1)
    after = datetime(9000, 1, 1, tzinfo=UTC)
    started = clock.perf_counter()
    got = occurrences(spec, after, after + timedelta(seconds=3), 10)
    assert clock.perf_counter() - started < 0.5
    assert got == [after + timedelta(seconds=s) for s in (1, 2, 3)]


def test_interval_times_lie_on_the_anchor_lattice_both_sides() -> None:
    msg = deployments_pb2.Schedule(interval_seconds=5400)
    msg.anchor.FromDatetime(datetime(2030, 1, 1, 0, 10))  # noqa: DTZ001 - protobuf reads naive as UTC
    anchor = datetime(2030, 1, 1, 0, 10, tzinfo=UTC)
    got = occurrences(parse_schedule(msg), anchor - timedelta(hours=3), anchor + timedelta(hours=3), 10)
    assert got == [anchor + k * timedelta(minutes=90) for k in (-1, 0, 1, 2)]


def test_rrule_expansion_skips_ahead_of_an_old_dtstart() -> None:
    spec = sched(rrule="FREQ=MINUTELY;INTERVAL=7")  # counts from 2020-01-01 00:00 UTC
    after = datetime(2060, 1, 1, tzinfo=UTC)
    started = clock.perf_counter()
    got = occurrences(spec, after, after + timedelta(hours=1), 3)
    assert clock.perf_counter() - started < 0.5  # walking 40 years of minutes takes ~10 s
    origin = datetime(2020, 1, 1, tzinfo=UTC)
    assert len(got) == 3
    assert all((t - origin) % timedelta(minutes=7) == timedelta(0) for t in got)
    assert got[0] - after <= timedelta(minutes=7)
    assert {b - a for a, b in pairwise(got)} == {timedelta(minutes=7)}


def test_rrule_count_counts_from_dtstart() -> None:
    spec = sched(rrule="DTSTART:20240101T000000\nRRULE:FREQ=HOURLY;COUNT=5")
    got = occurrences(spec, datetime(2024, 1, 1, 3, 30, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC), 10)
    assert got == [datetime(2024, 1, 1, 4, tzinfo=UTC)]  # the fifth, and the last


# -- properties


@st.composite
def windows(draw: st.DrawFn, max_hours: int = 72) -> tuple[str, datetime, datetime]:
    """A zone and an (after, until] window near one of its DST transitions."""
    zone_name = draw(st.sampled_from(ZONES))
    day = draw(st.sampled_from(TRANSITIONS[zone_name]))
    base = datetime.combine(day, time(), ZoneInfo(zone_name)).astimezone(UTC)
    after = base + timedelta(minutes=draw(st.integers(-48 * 60, 36 * 60)), seconds=draw(st.sampled_from([0, 0, 30])))
    return zone_name, after, after + timedelta(minutes=draw(st.integers(1, max_hours * 60)))


@st.composite
def crons(draw: st.DrawFn) -> tuple[str, set[int], set[int]]:
    """A cron text and the minutes and hours it matches (the oracle's view)."""
    step = draw(st.sampled_from([5, 10, 15, 20, 30]))
    minute_options = [
        (f"*/{step}", set(range(0, 60, step))),
        (f"{step}-59/{step}", set(range(step, 60, step))),
    ]
    picked = draw(st.lists(st.integers(0, 59), min_size=1, max_size=3, unique=True))
    minute_options.append((",".join(map(str, picked)), set(picked)))
    minute_text, minutes = draw(st.sampled_from(minute_options))
    hour_step = draw(st.sampled_from([2, 3, 4, 6]))
    hours_picked = draw(
        st.lists(st.sampled_from([0, 1, 2, 3, 4, 12, 22, 23]) | st.integers(0, 23), min_size=1, max_size=3, unique=True)
    )
    low = draw(st.integers(0, 3))
    hour_text, hours = draw(
        st.sampled_from(
            [
                ("*", set(range(24))),
                (f"*/{hour_step}", set(range(0, 24, hour_step))),
                (",".join(map(str, hours_picked)), set(hours_picked)),
                (f"{low}-{low + 2}", {low, low + 1, low + 2}),
            ]
        )
    )
    return f"{minute_text} {hour_text} * * *", minutes, hours


def expected_daily_matches(zone: ZoneInfo, minutes: set[int], hours: set[int], after: datetime, until: datetime):
    """Each wall-clock match once: at its first instant, or shifted forward by the gap if it does not exist."""
    out = set()
    day = after.astimezone(zone).date() - timedelta(days=2)
    while day <= until.astimezone(zone).date() + timedelta(days=2):
        for hour in hours:
            for minute in minutes:
                wall = datetime.combine(day, time(hour, minute))
                first = wall.replace(tzinfo=zone)  # fold=0
                exists = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall
                t = first.astimezone(UTC) if exists else (first + timedelta(hours=1)).astimezone(UTC)
                if after < t <= until:
                    out.add(t)
        day += timedelta(days=1)
    return sorted(out)


def assert_well_formed(got: list[datetime], after: datetime, until: datetime, limit: int) -> None:
    assert len(got) <= limit
    assert all(t.tzinfo is UTC and after < t <= until for t in got)
    assert all(a < b for a, b in pairwise(got))  # sorted and unique


@FAST
@given(window=windows(), cron=crons(), limit=st.integers(1, 400))
def test_cron_fires_each_wall_clock_match_once(window, cron, limit: int) -> None:
    zone_name, after, until = window
    text, minutes, hours = cron
    got = occurrences(sched(cron=text, timezone=zone_name), after, until, limit)
    assert_well_formed(got, after, until, limit)
    assert got == expected_daily_matches(ZoneInfo(zone_name), minutes, hours, after, until)[:limit]


@FAST
@given(window=windows(), cron=crons())
def test_daily_rrule_by_hour_and_minute_matches_the_same_wall_clock_rules(window, cron) -> None:
    zone_name, after, until = window
    _, minutes, hours = cron
    by = f"BYHOUR={','.join(map(str, sorted(hours)))};BYMINUTE={','.join(map(str, sorted(minutes)))};BYSECOND=0"
    got = occurrences(sched(rrule=f"FREQ=DAILY;{by}", timezone=zone_name), after, until, BIG)
    assert got == expected_daily_matches(ZoneInfo(zone_name), minutes, hours, after, until)


@st.composite
def rrules(draw: st.DrawFn) -> str:
    freq = draw(st.sampled_from(["MINUTELY", "HOURLY", "DAILY", "WEEKLY"]))
    interval = draw(
        st.sampled_from({"MINUTELY": [13, 30, 45], "HOURLY": [1, 2, 5], "DAILY": [1, 2, 3]}.get(freq, [1, 2]))
    )
    parts = [f"FREQ={freq}", f"INTERVAL={interval}"]
    if freq == "WEEKLY":
        days = draw(st.lists(st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]), min_size=1, unique=True))
        parts.append(f"BYDAY={','.join(days)}")
    if freq in ("DAILY", "WEEKLY") and draw(st.booleans()):
        parts.append(
            f"BYHOUR={','.join(map(str, draw(st.lists(st.integers(0, 23), min_size=1, max_size=3, unique=True))))}"
        )
    return ";".join(parts)


@FAST
@given(window=windows(), text=rrules(), back_days=st.integers(0, 20), at=st.times())
def test_rrule_matches_dateutil_walked_from_dtstart(window, text: str, back_days: int, at: time) -> None:
    zone_name, after, until = window
    zone = ZoneInfo(zone_name)
    dtstart = datetime.combine(after.astimezone(zone).date() - timedelta(days=back_days), at.replace(microsecond=0))
    msg = deployments_pb2.Schedule(rrule=text, timezone=zone_name)
    msg.anchor.FromDatetime(dtstart.replace(tzinfo=zone).astimezone(UTC))
    spec = parse_schedule(msg)
    got = occurrences(spec, after, until, BIG)
    # Oracle: dateutil from DTSTART (no skipping ahead), each wall time read with fold=0.
    assert spec.anchor is not None
    start = spec.anchor.astimezone(zone).replace(tzinfo=None)  # a skipped time was shifted
    walls = rrulestr(text, dtstart=start).between(
        start, until.astimezone(zone).replace(tzinfo=None) + timedelta(days=1), inc=True
    )
    expected = sorted(t for t in {w.replace(tzinfo=zone).astimezone(UTC) for w in walls} if after < t <= until)
    assert got == expected


INTERVALS = [60, 300, 900, 1800, 3600, 5400, 7200, 10800, 43200, 90000]


@FAST
@given(window=windows(), seconds=st.sampled_from(INTERVALS), anchor_minutes=st.integers(0, 10**6))
def test_sub_day_intervals_are_evenly_spaced_elapsed_time(window, seconds: int, anchor_minutes: int) -> None:
    zone_name, after, until = window
    anchor = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=anchor_minutes, seconds=7)
    msg = deployments_pb2.Schedule(interval_seconds=seconds, timezone=zone_name)
    msg.anchor.FromDatetime(anchor)
    got = occurrences(parse_schedule(msg), after, until, BIG)
    step = timedelta(seconds=seconds)
    assert_well_formed(got, after, until, BIG)
    assert len(got) == (until - anchor) // step - (after - anchor) // step
    assert all((t - anchor) % step == timedelta(0) for t in got)
    assert {b - a for a, b in pairwise(got)} <= {step}


@FAST
@given(
    window=windows(max_hours=24 * 8),
    days=st.integers(1, 3),
    anchor_minutes=st.integers(0, 3 * 366 * 24 * 60),
)
def test_whole_day_intervals_keep_the_anchor_wall_clock_time(window, days: int, anchor_minutes: int) -> None:
    zone_name, after, until = window
    zone = ZoneInfo(zone_name)
    # Wall-clock arithmetic on purpose: the anchor may be a skipped or repeated local time.
    anchor = datetime(2023, 1, 1, tzinfo=zone) + timedelta(minutes=anchor_minutes)
    msg = deployments_pb2.Schedule(interval_seconds=86400 * days, timezone=zone_name)
    msg.anchor.FromDatetime(anchor.astimezone(UTC))
    got = occurrences(parse_schedule(msg), after, until, BIG)
    assert_well_formed(got, after, until, BIG)
    wall = anchor.astimezone(zone).replace(tzinfo=None)
    for t in got:
        here = t.astimezone(zone)
        assert (here.date() - wall.date()).days % days == 0
        intended = datetime.combine(here.date(), wall.time())
        exists = intended.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == intended
        assert here.time() == (wall.time() if exists else (intended + timedelta(hours=1)).time())
    if until - after > timedelta(days=days + 1):
        assert got  # a window longer than the period always holds a run


def specs() -> st.SearchStrategy[ScheduleSpec]:
    return st.one_of(
        st.builds(lambda c, z: sched(cron=c[0], timezone=z), crons(), st.sampled_from(ZONES)),
        st.builds(lambda r, z: sched(rrule=r, timezone=z), rrules(), st.sampled_from(ZONES)),
        st.builds(
            lambda s, z: sched(interval_seconds=s, timezone=z),
            st.sampled_from([*INTERVALS, 86400, 172800]),
            st.sampled_from(ZONES),
        ),
    )


@FAST
@given(spec=specs(), window=windows(), cut=st.floats(0, 1), limit=st.integers(1, 50), batch=st.integers(1, 7))
def test_a_cursor_never_repeats_or_skips(spec: ScheduleSpec, window, cut: float, limit: int, batch: int) -> None:
    _, after, until = window
    mid = after + (until - after) * cut
    full = occurrences(spec, after, until, BIG)
    assert_well_formed(full, after, until, BIG)
    assert occurrences(spec, after, mid, BIG) + occurrences(spec, mid, until, BIG) == full
    assert occurrences(spec, after, until, limit) == full[:limit]
    # A scheduler persisting the last time it created as its cursor, a few at a time.
    walked: list[datetime] = []
    cursor = after
    while page := occurrences(spec, cursor, until, batch):
        walked += page
        cursor = page[-1]
    assert walked == full


@FAST
@given(
    zone_name=st.sampled_from(ZONES),
    pick=st.integers(0, 3),
    at=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    kind=st.sampled_from(["cron", "rrule", "interval"]),
    before=st.integers(0, 3),
    after=st.integers(0, 3),
)
def test_daily_schedules_run_once_per_local_day(
    zone_name: str, pick: int, at: time, kind: str, before: int, after: int
) -> None:
    zone = ZoneInfo(zone_name)
    day = TRANSITIONS[zone_name][pick]
    got = occurrences(_daily(kind, at, zone_name), *_day_window(day, zone, before, after), BIG)
    days = Counter(t.astimezone(zone).date() for t in got)
    assert days == Counter(day + timedelta(days=d) for d in range(-before, after + 1))
