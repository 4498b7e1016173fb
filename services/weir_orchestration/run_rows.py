"""A run's rows as state proposals read and write them (``states`` decides in between).

Reading: the runs a batch proposes for, with what their events name, in one
statement (one prepared statement for a single run, the unary path); the
:class:`RunCache` that spares a flow run's proposal its read on Postgres.
Writing: every new state in one statement, the run rows in one executemany and
the events in one outbox insert, or, for a single proposal on Postgres, all
three in one conditional statement that commits by itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from weir.v1 import common_pb2
from weir_kit.prepared import InsertMany, Keyed, Prepared, driver
from weir_kit.runtime import ServiceContext
from weir_orchestration import events
from weir_orchestration.models import flow_runs, flows, outbox, run_states, task_runs
from weir_orchestration.policy import RunKind, RunPolicy, RunTimes, State
from weir_orchestration.proto import policy_from_row, run_state_values, state_from_run_row

_CANCEL_TYPES = ("CANCELLING", "CANCELLED")


@dataclass
class Run:
    """A run as the policy sees it, updated in memory as a batch goes on."""

    ref: events.RunRef
    state: State | None
    policy: RunPolicy
    times: RunTimes
    cache_key: str = ""
    cache_expiration: datetime | None = None
    cancel_requested: bool = False
    #: Task runs: when the flow run's current RUNNING state began.
    parent_running_since: datetime | None = None
    dirty: bool = False
    #: The state id the run had when it was read (an optimistic write is conditional on it).
    read_state_id: str | None = None
    #: The run's states that carry an idempotency key, by key, when this replica has written the
    #: run's whole history (created it, then every state since); ``None``: unknown, look them up.
    keyed: dict[str, State] | None = None
    #: Taken from a :class:`RunCache`, not read: a decision that writes nothing is not proof.
    cached: bool = False


class StateRaced(Exception):
    """An optimistic write found the run's state changed since it was read: decide again, locked."""


#: Idempotency keys a cached run remembers; a run with more is looked up like any other.
_MAX_KEYED = 64


class RunCache:
    """Flow runs as this replica last committed them, so that a proposal on Postgres need not
    read its run first: the write alone, one round trip.

    A hit is a guess, never trusted: the write stays conditional on the run's state id, so a
    run another replica changed or deleted meanwhile loses the race (:class:`StateRaced`) and
    is decided again from the database; so is a hit whose decision would write nothing (a
    rejection, a wait), which no write has checked. State ids are never reused, so a matching
    state id proves that nothing else wrote the run since. Flow runs only: what the policy sees
    of a task run also depends on its flow run's state (the cancel flag, RUNNING since), which
    changes without the task run's state id changing.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._runs: OrderedDict[str, Run] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: str) -> Run | None:
        """A copy the caller may change (``apply`` updates its runs as it decides)."""
        run = self._runs.get(run_id)
        return None if run is None else replace(run, cached=True)

    def put(self, runs: Iterable[Run]) -> None:
        """Remember ``runs`` as committed (call only after the commit)."""
        for run in runs:
            if run.ref.kind is not RunKind.FLOW or run.state is None:
                continue
            keyed = run.keyed if run.keyed is not None and len(run.keyed) <= _MAX_KEYED else None
            self._runs[run.ref.id] = replace(run, read_state_id=run.state.id, keyed=keyed, dirty=False, cached=False)
            self._runs.move_to_end(run.ref.id)
        while len(self._runs) > self.size:
            self._runs.popitem(last=False)

    def drop(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            self._runs.pop(run_id, None)


@dataclass
class Writes:
    """What deciding a batch leaves to write: history rows and events (the runs carry ``dirty``)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[common_pb2.Event] = field(default_factory=list)


# ------------------------------------------------------------------ reading


def _table(kind: RunKind) -> Any:
    return flow_runs if kind is RunKind.FLOW else task_runs


def _load_query(kind: RunKind, lock: bool) -> Any:
    """The runs with what their events name (flow, parent flow run); the caller adds the WHERE."""
    table = _table(kind)
    if kind is RunKind.FLOW:
        query = select(table, flows.c.name.label("ref_flow_name")).join(
            flows, flows.c.id == table.c.flow_id, isouter=True
        )
    else:
        parent = flow_runs.alias("parent")
        query = (
            select(
                table,
                parent.c.flow_id.label("ref_flow_id"),
                parent.c.state_type.label("parent_state_type"),
                parent.c.state_timestamp.label("parent_state_timestamp"),
                flows.c.name.label("ref_flow_name"),
            )
            .join(parent, parent.c.id == table.c.flow_run_id, isouter=True)
            .join(flows, flows.c.id == parent.c.flow_id, isouter=True)
        )
    return query.with_for_update(of=table) if lock else query


#: One run by id, by kind and lock: the unary proposal's only read.
_LOAD_ONE = {
    (kind, lock): Prepared(_load_query(kind, lock).where(_table(kind).c.id == bindparam("id")))
    for kind in RunKind
    for lock in (False, True)
}


async def load_runs(session: AsyncSession, kind: RunKind, ids: Sequence[str], *, lock: bool) -> dict[str, Run]:
    """The runs with what their events name (flow, parent flow run): one statement."""
    if not ids:
        return {}
    unique = sorted(set(ids))
    if len(unique) == 1:
        rows = await (await driver(session)).fetch(_LOAD_ONE[(kind, lock)], {"id": unique[0]})
    else:
        query = _load_query(kind, lock).where(_table(kind).c.id.in_(unique))
        rows = (await session.execute(query)).all()
    out = {}
    for row in rows:
        if kind is RunKind.FLOW:
            ref = events.RunRef(
                kind, row.id, row.name, row.flow_id, row.ref_flow_name or "", "", row.deployment_id or "", row.tags
            )
            cancel, since = False, None
        else:
            ref = events.RunRef(
                kind, row.id, row.name, row.ref_flow_id or "", row.ref_flow_name or "", row.flow_run_id, tags=row.tags
            )
            cancel = row.parent_state_type in _CANCEL_TYPES
            since = row.parent_state_timestamp if row.parent_state_type == "RUNNING" else None
        out[row.id] = Run(
            ref=ref,
            state=state_from_run_row(row),
            policy=policy_from_row(row),
            times=RunTimes(row.run_count, row.expected_start_time, row.start_time, row.end_time, row.total_run_time),
            cache_key=getattr(row, "cache_key", None) or "",
            cache_expiration=getattr(row, "cache_expiration", None),
            cancel_requested=cancel,
            parent_running_since=since,
            read_state_id=row.state_id,
        )
    return out


_STATE_IDS = Keyed(lambda listed: select(run_states.c.id).where(listed), run_states.c.id)


async def existing_state_ids(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` the history already holds (in a write transaction)."""
    if not ids:
        return set()
    return {row.id for row in await _STATE_IDS.fetch(await driver(session), ids)}


INSERT_STATES = InsertMany(run_states)
OUTBOX_KEYS = ("id", "subject", "data", "created")
RUN_TIME_COLUMNS = ("run_count", "expected_start_time", "start_time", "end_time", "total_run_time")


def _update_run(kind: RunKind) -> Prepared:
    """UPDATE of a run's state columns and counters (bound as ``b_<column>``)."""
    table = _table(kind)
    names = ["updated", *(c.name for c in table.c if c.name.startswith("state_")), *RUN_TIME_COLUMNS]
    if kind is RunKind.TASK:
        names += ["cache_key", "cache_expiration"]
    values = {name: bindparam(f"b_{name}", type_=table.c[name].type) for name in names}
    return Prepared(update(table).where(table.c.id == bindparam("b_id")).values(values))


_UPDATE_RUN = {kind: _update_run(kind) for kind in RunKind}


def _write_one(kind: RunKind) -> Prepared:
    """Postgres: one state, its run's update and its event in one statement (one round trip, not
    three), written only if the run still has the state it was read with (``read_state_id``);
    the statement answers how many runs it updated (0 or 1)."""
    table = _table(kind)
    run = (
        _UPDATE_RUN[kind]
        .statement.where(table.c.state_id.is_not_distinct_from(bindparam("read_state_id", type_=table.c.state_id.type)))
        .returning(table.c.id)
        .cte("updated_run")
    )

    def insert_if_updated(target: Any, columns: Sequence[str], prefix: str) -> Any:
        values = select(*(bindparam(f"{prefix}{c}", type_=target.c[c].type) for c in columns)).select_from(run)
        return insert(target).from_select(list(columns), values)

    state = insert_if_updated(run_states, [c.name for c in run_states.c], "").cte("new_state")
    event = insert_if_updated(outbox, OUTBOX_KEYS, "o_").cte("new_event")
    return Prepared(select(func.count()).select_from(run).add_cte(state, event))


_WRITE_ONE = {kind: _write_one(kind) for kind in RunKind}


async def write(
    session: AsyncSession,
    svc: ServiceContext,
    kind: RunKind,
    runs: Any,
    batch: Writes,
    now: datetime,
    *,
    optimistic: bool = False,
) -> bool:
    """Write the batch; False only when an ``optimistic`` write found its run changed."""
    changed = [r for r in runs if r.dirty]
    if not changed and not batch.history and not batch.events:
        return True
    drv = await driver(session)
    for r in changed:
        r.dirty = False
    if drv.is_postgres and len(batch.history) == len(changed) == len(batch.events) == 1:
        (event,) = svc.outbox.rows(batch.events)
        params = {
            **batch.history[0],
            **_run_values(kind, changed[0], now),
            **{f"o_{k}": event[k] for k in OUTBOX_KEYS},
            "read_state_id": changed[0].read_state_id,
        }
        (row,) = await drv.fetch(_WRITE_ONE[kind], params)
        if row[0] == 1:
            return True
        if optimistic:
            return False
        raise RuntimeError(f"{kind.value} run {changed[0].ref.id} changed under its row lock")
    if optimistic:
        raise StateRaced("an optimistic proposal writes one state")  # not expected: decide again, locked
    await INSERT_STATES.run(drv, batch.history)
    await drv.executemany(_UPDATE_RUN[kind], [_run_values(kind, r, now) for r in changed])
    await svc.outbox.add_bundle(session, batch.events)
    return True


def _run_values(kind: RunKind, run: Run, now: datetime) -> dict[str, Any]:
    """Bound values of ``_UPDATE_RUN[kind]`` for ``run``."""
    assert run.state is not None
    t = run.times
    values: dict[str, Any] = {f"b_{name}": value for name, value in run_state_values(run.state).items()}
    values.update(
        b_id=run.ref.id,
        b_updated=now,
        b_run_count=t.run_count,
        b_expected_start_time=t.expected_start_time,
        b_start_time=t.start_time,
        b_end_time=t.end_time,
        b_total_run_time=t.total_run_time,
    )
    if kind is RunKind.TASK:
        values["b_cache_key"] = run.cache_key or None
        values["b_cache_expiration"] = run.cache_expiration
    return values
