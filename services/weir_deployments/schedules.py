"""Deployment schedules: parse and check them, and compute when they fire.

A schedule is an interval, a cron expression (croniter) or an RFC 5545
recurrence rule (dateutil), read in an IANA time zone (``zoneinfo``; "UTC"
when none is given)::

    spec = parse_schedule(msg, field=f"schedules[{i}]")   # InvalidArgument naming the field
    occurrences(spec, after=cursor, until=now + horizon, limit=100)

``occurrences`` returns every scheduled instant ``t`` with
``after < t <= until`` (sorted, unique, aware UTC, at most ``limit``). The
set of instants is fixed by the schedule alone, never by the window asked
for, so ``occurrences(a, m) + occurrences(m, b) == occurrences(a, b)``: a
scheduler that keeps ``after`` as a durable cursor never fires a time twice
and never skips one across restarts.

Daylight-saving time
--------------------
*Intervals shorter than a day, or not a whole number of days*, are elapsed
time: ``anchor + k * interval`` for every integer ``k`` (before the anchor
too, as Prefect does). Every hour is every 3,600 real seconds, across DST.

*Intervals of whole days*, *cron* and *rrule* schedules are wall-clock times
in the schedule's zone ("09:00 every day" stays 09:00 local, as in Prefect).
Each wall-clock match fires exactly once, turned into an instant like this:

* **Spring forward** (a wall time that does not exist, e.g. 02:30 on
  2024-03-10 in America/New_York): it fires once, shifted forward by the
  gap, at 03:30 EDT. A daily 02:30 job still runs every day. If the shifted
  instant is also a match of its own (``0 2,3 * * *``: 02:00 becomes 03:00),
  it fires once.
* **Fall back** (a wall time that happens twice, e.g. 01:30 on 2024-11-03 in
  America/New_York): it fires once, at the first of the two (``fold=0``,
  01:30 EDT), never twice. The rule is "once per wall-clock match", so
  ``0 * * * *`` fires 24 times on that 25-hour day, two real hours apart
  from 01:00 EDT to 02:00 EST.

That is Python's ``fold=0`` reading of a local time (PEP 495), the same as
asking what the clock on the wall says.

Rrules
------
The rule is expanded in wall time from ``DTSTART`` = the anchor's local
time, or 2020-01-01 00:00 local when there is no anchor. A ``DTSTART`` in
the rule text is accepted and wins over the anchor. Every date-time in the
text (``DTSTART``, ``UNTIL``, ``RDATE``, ``EXDATE``) is read as wall-clock
time in the schedule's zone; a trailing ``Z`` is ignored, as Prefect does
for ``UNTIL``. A ``TZID`` must name the schedule's zone; when the schedule
gives no zone, the rule's ``TZID`` becomes it.

Cron
----
Five fields (minute hour day-of-month month day-of-week) or a croniter alias
(``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``); no
seconds or year field, no random ``R`` fields (their times would change on
every parse). Day-of-month and day-of-week combine with OR, as in Vixie cron.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil import rrule as du_rrule

from weir._proto import timestamp_to_datetime, to_timestamp
from weir.errors import InvalidArgument
from weir.v1 import deployments_pb2

__all__ = ["ScheduleSpec", "occurrences", "parse_schedule", "schedule_to_proto"]

MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=36500)
#: Where intervals and rrules count from when the schedule has no anchor (local wall time).
DEFAULT_ANCHOR_WALL = datetime(2020, 1, 1)  # noqa: DTZ001 - a wall time, placed in the zone when used

_DAY = timedelta(days=1)
_RANDOM_FIELD = re.compile(r"(?<![a-z])r(?![a-z])", re.IGNORECASE)
# Whole periods an rrule can be moved forward by without changing its set of times.
_PERIODS = {
    du_rrule.WEEKLY: timedelta(weeks=1),
    du_rrule.DAILY: timedelta(days=1),
    du_rrule.HOURLY: timedelta(hours=1),
    du_rrule.MINUTELY: timedelta(minutes=1),
    du_rrule.SECONDLY: timedelta(seconds=1),
}


@dataclass(frozen=True)
class ScheduleSpec:
    """A checked schedule, as ``parse_schedule`` returns it."""

    kind: str  # "interval" | "cron" | "rrule"
    interval: timedelta | None
    cron: str | None
    rrule: str | None
    anchor: datetime | None  # aware UTC
    timezone: str  # IANA name, "UTC" when none was given
    active: bool

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def key(self) -> str:
        """The identity of what decides the schedule's times (not ``active``).

        Equal keys mean equal occurrences, so a re-deployed but unchanged
        schedule keeps its cursor. Cron ignores the anchor, so its key does too.
        """
        if self.kind == "interval":
            assert self.interval is not None
            expression = f"{self.interval // timedelta(microseconds=1)}us"
        else:
            expression = self.cron if self.kind == "cron" else self.rrule
        anchor = None if self.kind == "cron" or self.anchor is None else self.anchor.isoformat()
        return json.dumps(
            {"kind": self.kind, "expression": expression, "anchor": anchor, "timezone": self.timezone},
            sort_keys=True,
            separators=(",", ":"),
        )


def parse_schedule(msg: deployments_pb2.Schedule, field: str = "schedule") -> ScheduleSpec:
    """Check a ``Schedule`` message; ``InvalidArgument`` names the bad field.

    Callers with a list pass ``field=f"schedules[{i}]"``; errors then name
    e.g. ``schedules[1].cron`` or ``schedules[0].timezone``.
    """
    kind = msg.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument("a schedule needs one of interval_seconds, cron or rrule", field=field)
    timezone = msg.timezone.strip()
    if timezone:
        _zone(timezone, f"{field}.timezone")
    anchor = timestamp_to_datetime(msg.anchor) if msg.HasField("anchor") else None
    interval = cron = rule = None
    if kind == "interval_seconds":
        interval = _parse_interval(msg.interval_seconds, f"{field}.interval_seconds")
    elif kind == "cron":
        cron = _parse_cron(msg.cron, f"{field}.cron")
    else:
        rule = msg.rrule.strip()
        timezone = _check_rrule(rule, timezone, anchor, f"{field}.rrule")
    return ScheduleSpec(
        kind="interval" if kind == "interval_seconds" else kind,
        interval=interval,
        cron=cron,
        rrule=rule,
        anchor=anchor,
        timezone=timezone or "UTC",
        active=msg.active,
    )


def schedule_to_proto(spec: ScheduleSpec, schedule_id: str = "") -> deployments_pb2.Schedule:
    """The ``Schedule`` message of a spec; ``parse_schedule`` reads it back equal."""
    msg = deployments_pb2.Schedule(
        id=schedule_id, timezone=spec.timezone, active=spec.active, anchor=to_timestamp(spec.anchor)
    )
    if spec.kind == "interval":
        assert spec.interval is not None
        msg.interval_seconds = spec.interval.total_seconds()
    elif spec.kind == "cron":
        msg.cron = spec.cron or ""
    else:
        msg.rrule = spec.rrule or ""
    return msg


def occurrences(spec: ScheduleSpec, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The first ``limit`` scheduled instants in ``(after, until]``, sorted, aware UTC.

    ``after`` and ``until`` must be aware (any zone). See the module docstring
    for how wall-clock schedules cross DST.
    """
    for name, value in (("after", after), ("until", until)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    after, until = after.astimezone(UTC), until.astimezone(UTC)
    if limit <= 0 or after >= until:
        return []
    zone = spec.zone
    if spec.kind == "interval":
        assert spec.interval is not None
        if spec.interval % _DAY:
            return _elapsed(spec, zone, after, until, limit)
    slack = _slack(zone, after, until)
    start = _wall(after, zone) - slack
    if spec.kind == "interval":
        walls = _day_walls(spec, zone, start)
    elif spec.kind == "cron":
        walls = croniter(spec.cron, start).all_next(datetime)
    else:
        walls = _rrule_walls(spec, zone, start)
    return _collect(walls, zone, after, until, limit, slack)


# -- checking


def _zone(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(
            f"unknown time zone {name!r} (use an IANA name such as 'Europe/Paris')", field=field
        ) from None


def _parse_interval(seconds: float, field: str) -> timedelta:
    if not math.isfinite(seconds) or not (MIN_INTERVAL.total_seconds() <= seconds <= MAX_INTERVAL.total_seconds()):
        raise InvalidArgument(
            f"interval_seconds must be at least 1 second and at most {MAX_INTERVAL.days // 365} years, got {seconds}",
            field=field,
        )
    return timedelta(seconds=seconds)


def _parse_cron(text: str, field: str) -> str:
    expression = " ".join(text.split())
    problem = None
    if not expression:
        problem = "it is empty"
    elif not expression.startswith("@") and len(expression.split()) != 5:
        fields = len(expression.split())
        problem = f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), got {fields}"
    elif _RANDOM_FIELD.search(expression):
        problem = "random 'R' fields are not supported (the times would change on every read)"
    else:
        try:
            croniter(expression, DEFAULT_ANCHOR_WALL).get_next(datetime)
        except ValueError as exc:  # croniter's errors are ValueErrors
            problem = str(exc) or type(exc).__name__
            if expression.startswith("@"):
                problem = "unknown alias (use @hourly, @daily, @weekly, @monthly or @yearly)"
            elif "failed to find next date" in problem:
                problem = "it never matches a date"
    if problem:
        raise InvalidArgument(f"invalid cron expression {text!r}: {problem}", field=field)
    return expression


def _check_rrule(text: str, timezone: str, anchor: datetime | None, field: str) -> str:
    """Check the rule; the zone the schedule uses (a rule's TZID fills an empty one)."""
    if not text:
        raise InvalidArgument("invalid rrule '': it is empty", field=field)
    try:
        _, tzids = _rule(text, DEFAULT_ANCHOR_WALL)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise InvalidArgument(
            f"invalid rrule {text!r}: {exc} (expected RFC 5545 text such as 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=9')",
            field=field,
        ) from None
    for tzid in tzids:
        _zone(tzid, field)
        if timezone and tzid != timezone:
            raise InvalidArgument(
                f"invalid rrule {text!r}: TZID {tzid!r} conflicts with timezone {timezone!r}", field=field
            )
        timezone = tzid
    rule, _ = _rule(text, _dtstart(anchor, ZoneInfo(timezone or "UTC")))
    # Refuse a rule with no times (BYMONTH=2;BYMONTHDAY=30, UNTIL before DTSTART) here, once:
    # dateutil searches up to year 9999 before it gives up on one.
    if next(iter(rule), None) is None:
        raise InvalidArgument(f"invalid rrule {text!r}: it never produces a time", field=field)
    return timezone


@lru_cache(maxsize=256)
def _rule(text: str, dtstart: datetime) -> tuple[du_rrule.rrulebase, tuple[str, ...]]:
    """The rule (naive wall times) and the TZIDs its text names.

    ``ignoretz`` drops ``Z`` and offsets, and a TZID lookup answering None
    leaves values naive, so every date-time in the text is wall time.
    """
    tzids: list[str] = []

    def lookup(name: str) -> None:
        tzids.append(name)

    rule = du_rrule.rrulestr(text, dtstart=dtstart, ignoretz=True, tzids=lookup, unfold=True)
    return rule, tuple(dict.fromkeys(tzids))


# -- expanding


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    # fold=0: a skipped time reads with the offset before the gap (shifted forward), a repeated one is the first.
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _slack(zone: ZoneInfo, after: datetime, until: datetime) -> timedelta:
    """How far past either end of the window a wall time can still land inside it.

    A skipped wall time just before ``after`` lands after it, shifted by the
    gap; a repeated one just after ``until`` reads as its first pass, before
    it. Both are bounded by the spread of UTC offsets around the ends (two
    days covers any real transition, the 24 h of Samoa 2011 included), plus
    two hours for a change inside the window (none is larger).
    """
    offsets = [
        (t + d).astimezone(zone).utcoffset() or timedelta(0)
        for t in (after, until)
        for d in (-2 * _DAY, timedelta(0), 2 * _DAY)
    ]
    return max(offsets) - min(offsets) + timedelta(hours=2)


def _collect(
    walls: Iterator[datetime], zone: ZoneInfo, after: datetime, until: datetime, limit: int, slack: timedelta
) -> list[datetime]:
    """The first ``limit`` distinct instants in the window, from increasing wall times.

    Read with ``fold=0``, later wall times give later instants, except that a
    skipped one lands at its shifted wall time. So once ``limit`` instants
    are kept, a wall time past the last one's own wall time cannot come
    before it: that is where to stop.
    """
    found: list[datetime] = []
    stop = _wall(until, zone) + slack
    for wall in walls:
        if wall > stop:
            break
        t = _instant(wall, zone)
        if not after < t <= until:
            continue
        i = bisect_left(found, t)
        if i < len(found) and found[i] == t:
            continue
        found.insert(i, t)
        if len(found) >= limit:
            del found[limit:]
            stop = min(stop, _wall(found[-1], zone))
    return found


def _elapsed(spec: ScheduleSpec, zone: ZoneInfo, after: datetime, until: datetime, limit: int) -> list[datetime]:
    assert spec.interval is not None
    anchor = spec.anchor or _instant(DEFAULT_ANCHOR_WALL, zone)
    k = (after - anchor) // spec.interval + 1  # first k with anchor + k * interval > after
    out: list[datetime] = []
    t = anchor + k * spec.interval
    while t <= until and len(out) < limit:
        out.append(t)
        t += spec.interval
    return out


def _dtstart(anchor: datetime | None, zone: ZoneInfo) -> datetime:
    """The local wall time schedules count from (whole seconds, as dateutil keeps them)."""
    return _wall(anchor, zone).replace(microsecond=0) if anchor else DEFAULT_ANCHOR_WALL


def _day_walls(spec: ScheduleSpec, zone: ZoneInfo, start: datetime) -> Iterator[datetime]:
    assert spec.interval is not None
    period = spec.interval
    anchor = _wall(spec.anchor, zone) if spec.anchor else DEFAULT_ANCHOR_WALL
    k = (start - anchor) // period
    while True:
        yield anchor + k * period
        k += 1


def _rrule_walls(spec: ScheduleSpec, zone: ZoneInfo, start: datetime) -> Iterator[datetime]:
    assert spec.rrule is not None
    rule, _ = _rule(spec.rrule, _dtstart(spec.anchor, zone))
    # dateutil walks from DTSTART one period at a time; move DTSTART forward by whole
    # periods first (same set of times) so a minutely rule from 2020 stays cheap.
    if isinstance(rule, du_rrule.rrule) and rule._count is None and rule._freq in _PERIODS:
        period = _PERIODS[rule._freq] * rule._interval
        steps = (start - rule._dtstart) // period
        if steps > 0:
            rule = rule.replace(dtstart=rule._dtstart + steps * period)
    return rule.xafter(start)
