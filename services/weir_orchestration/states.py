"""State proposals for flow runs and task runs: one path for both kinds,
for one proposal (SetFlowRunState, SetTaskRunState, the sweeper) and for a
SyncRuns batch of thousands.

Inside the caller's transaction: load the runs (locked on Postgres), the
states already written by resends and idempotency keys, the cache hits and
the cancel flags, all in a handful of statements; run the pure policy for
each proposal against the states held in memory; then write every new
state in one statement, the run rows in one executemany and the events in
one outbox insert.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from weir.errors import InvalidArgument, NotFound
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb
from weir_kit import paging
from weir_kit.prepared import InsertMany, Keyed, Prepared, driver
from weir_kit.runtime import ServiceContext
from weir_kit.values import short_text
from weir_orchestration import events
from weir_orchestration.cache_keys import cache_lookup, hit_for, keys_asked_about, lock_cache_keys, track_cache_key
from weir_orchestration.filters import after_key, next_token
from weir_orchestration.models import flow_runs, flows, outbox, run_states, task_runs
from weir_orchestration.policy import (
    COMPLETED,
    RUNNING,
    Decision,
    RunKind,
    RunPolicy,
    RunTimes,
    State,
    TransitionContext,
    Verdict,
    account,
    decide,
    evolve,
    replay,
)
from weir_orchestration.proto import (
    history_values,
    parse_id,
    policy_from_row,
    run_state_values,
    state_from_history_row,
    state_from_pb,
    state_from_run_row,
    state_to_pb,
)

_TICK = timedelta(microseconds=1)
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


@dataclass
class Proposal:
    run_id: str
    state: State
    force: bool = False
    idempotency_key: str = ""
    expected_state_id: str = ""
    fencing_token: str = ""
    #: False when the server generated ``state.id`` (it cannot be in the history yet).
    client_state_id: bool = True


@dataclass
class Outcome:
    verdict: Verdict
    found: bool = True


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
class _Batch:
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[common_pb2.Event] = field(default_factory=list)


def parse_proposal(run_id: str, msg: pb.StateProposal, now: datetime, field: str = "proposal") -> Proposal:
    if not msg.HasField("state"):
        raise InvalidArgument(f"{field}.state is required", field=f"{field}.state")
    return Proposal(
        run_id=run_id,
        state=state_from_pb(msg.state, now, f"{field}.state"),
        force=msg.force,
        idempotency_key=short_text(msg.idempotency_key, f"{field}.idempotency_key"),
        expected_state_id=parse_id(msg.expected_state_id, f"{field}.expected_state_id", required=False),
        fencing_token=msg.fencing_token,
        client_state_id=bool(msg.state.id),
    )


def result_to_pb(verdict: Verdict) -> pb.ProposalResult:
    return pb.ProposalResult(
        decision=verdict.decision.value,  # type: ignore[arg-type]
        state=state_to_pb(verdict.state),
        reason=verdict.reason,
        delay_seconds=verdict.delay_seconds,
        rule=verdict.rule,
    )


# ------------------------------------------------------------------ loading


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
_STATE_ROWS = Keyed(lambda listed: select(run_states).where(listed), run_states.c.id)


async def existing_state_ids(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` the history already holds (in a write transaction)."""
    if not ids:
        return set()
    return {row.id for row in await _STATE_IDS.fetch(await driver(session), ids)}


async def _earlier_answers(
    session: AsyncSession, proposals: Sequence[Proposal], runs: Mapping[str, Run]
) -> tuple[dict[str, tuple[str, State]], dict[tuple[str, str], State]]:
    """States already written for these proposals: by state id, and by (run id, idempotency key).

    Only ids a client chose can already exist: a state id the server has just
    generated cannot, so a plain unary proposal costs no lookup here; nor does a
    key of a run whose keyed states are known (:attr:`Run.keyed`).
    """
    state_ids = [p.state.id for p in proposals if p.client_state_id]
    by_id: dict[str, tuple[str, State]] = {}
    by_key: dict[tuple[str, str], State] = {}
    keyed = []
    for p in proposals:
        if not p.idempotency_key:
            continue
        known = runs[p.run_id].keyed if p.run_id in runs else None
        if known is None:
            keyed.append((p.run_id, p.idempotency_key))
        elif p.idempotency_key in known:
            by_key[(p.run_id, p.idempotency_key)] = known[p.idempotency_key]
    if state_ids:
        rows = await _STATE_ROWS.fetch(await driver(session), state_ids)
        by_id.update({r.id: (r.run_id, state_from_history_row(r)) for r in rows})
    if keyed:
        query = select(run_states).where(
            run_states.c.run_id.in_({run for run, _ in keyed}),
            run_states.c.idempotency_key.in_({key for _, key in keyed}),
        )
        for r in (await session.execute(query)).all():
            by_key.setdefault((r.run_id, r.idempotency_key), state_from_history_row(r))
    return by_id, by_key


# ------------------------------------------------------------------ deciding


def _after(state: State, current: State | None) -> State:
    """Timestamps of a run's states strictly increase, so history reads back in order."""
    if current is not None and state.timestamp <= current.timestamp:
        return evolve(state, timestamp=current.timestamp + _TICK)
    return state


def _evaluate(
    run: Run, p: Proposal, proposed: State, now: datetime, hit: tuple[str, State] | None, held: bool = False
) -> Verdict:
    ctx = TransitionContext(
        kind=run.ref.kind,
        current=run.state,
        proposed=proposed,
        now=now,
        policy=run.policy,
        run_count=run.times.run_count,
        cache_key=run.cache_key,
        cached=hit[1] if hit else None,
        cached_run_id=hit[0] if hit else "",
        cancel_requested=run.cancel_requested,
        fencing_token=p.fencing_token,
        cache_key_held=held,
        parent_running_since=run.parent_running_since,
    )
    return decide(ctx, force=p.force, expected_state_id=p.expected_state_id)


def _to_write(verdict: Verdict, current: State | None) -> State | None:
    if verdict.decision in (Decision.WAIT, Decision.ABORT) or verdict.state is None:
        return None
    if current is not None and verdict.state.id == current.id:
        return None
    return _after(verdict.state, current)


def _record(run: Run, written: State, p: Proposal, proposed: State, batch: _Batch) -> None:
    old = run.state
    if run.ref.kind is RunKind.TASK and old is not None and old.is_terminal and written.type == RUNNING:
        run.times = evolve(run.times, run_count=0)  # a new attempt of its flow run: its retries start over
    run.times = account(run.times, old, written)
    run.state = written
    if written.details.cache_key:
        run.cache_key = written.details.cache_key
    if written.type == COMPLETED:
        run.cache_expiration = written.details.cache_expiration
    run.dirty = True
    key = p.idempotency_key if written.id == proposed.id else ""
    if key and run.keyed is not None:
        run.keyed = {**run.keyed, key: written}  # a new dict: a cached run shares the old one
    batch.history.append(history_values(run.ref.id, run.ref.kind.value, written, key))
    batch.events.append(events.state_changed(run.ref, old, proposed, written))


async def apply(
    session: AsyncSession,
    svc: ServiceContext,
    kind: RunKind,
    proposals: Sequence[Proposal],
    now: datetime,
    created: Mapping[str, Run] | None = None,
    *,
    optimistic: bool = False,
    cache: RunCache | None = None,
    decided: dict[str, Run] | None = None,
) -> list[Outcome]:
    """Decide and write ``proposals`` (in order) inside the caller's transaction.

    ``created``: runs this transaction has just inserted (no need to read them back).
    ``optimistic`` (Postgres, one proposal that takes no cache-key lock, in a
    ``Database.autocommit`` session): the run is read without a lock (or taken from
    ``cache``) and the state is written by one statement that commits by itself and matches only if
    the run still has the state that was read; :class:`StateRaced` when it no
    longer does, or when a cached run's decision writes nothing.
    ``decided``: filled with the runs as they are after this call (for a
    :class:`RunCache`, once the caller has committed).
    """
    if not proposals:
        return []
    created = created or {}
    cached: dict[str, Run] = {}
    if optimistic and cache is not None:
        for run_id in {p.run_id for p in proposals} - created.keys():
            hit = cache.get(run_id)
            if hit is not None:
                cached[run_id] = hit
    to_load = [p.run_id for p in proposals if p.run_id not in created and p.run_id not in cached]
    lock = svc.db.is_postgres and not optimistic
    loaded = await load_runs(session, kind, to_load, lock=lock) if to_load else {}
    runs = {**created, **cached, **loaded}
    by_id, by_key = await _earlier_answers(session, proposals, runs)
    wanted_keys = keys_asked_about(kind, proposals, runs)
    # Two streams asking about one key at once: the second waits for the first's commit (Postgres).
    await lock_cache_keys(session, wanted_keys, is_postgres=svc.db.is_postgres)
    hits, holders = await cache_lookup(session, wanted_keys, now, len(runs) + 1)
    batch = _Batch()
    outcomes = []
    for p in proposals:
        run = runs.get(p.run_id)
        if run is None:
            reason = f"{kind.value} run {p.run_id} not found"
            outcomes.append(Outcome(Verdict(Decision.ABORT, None, reason, rule="not_found"), found=False))
            continue
        earlier = by_id.get(p.state.id)
        if earlier is not None and earlier[0] != p.run_id:
            if run.cached:  # the answer carries the run's state: not the cache's guess
                raise StateRaced(f"{kind.value} run {p.run_id}: a rejection on a cached run")
            reason = f"state id {p.state.id} belongs to another run"
            outcomes.append(Outcome(Verdict(Decision.REJECT, run.state, reason, rule="state_id")))
            continue
        first = earlier[1] if earlier else by_key.get((p.run_id, p.idempotency_key)) if p.idempotency_key else None
        if first is not None:
            outcomes.append(Outcome(replay(first)))
            continue
        key = p.state.details.cache_key or run.cache_key
        proposed = _after(p.state, run.state)
        held = bool(key) and bool(holders.get(key, set()) - {p.run_id})
        verdict = _evaluate(run, p, proposed, now, hit_for(hits, key, p.run_id) if key else None, held)
        key_before = run.cache_key
        written = _to_write(verdict, run.state)
        if written is None and run.cached:
            raise StateRaced(f"{kind.value} run {p.run_id}: a decision on a cached run that writes nothing")
        if written is not None:
            _record(run, written, p, proposed, batch)
            if kind is RunKind.TASK and run.cache_key:
                track_cache_key(run, key_before, written, hits, holders, now)
            by_id[written.id] = (p.run_id, written)
            if p.idempotency_key and written.id == p.state.id:
                by_key[(p.run_id, p.idempotency_key)] = written
            verdict = evolve(verdict, state=written)
        elif verdict.state is None:
            verdict = evolve(verdict, state=run.state)
        outcomes.append(Outcome(verdict))
    if not await write(session, svc, kind, runs.values(), batch, now, optimistic=optimistic):
        raise StateRaced(f"{kind.value} run {proposals[0].run_id} changed while its proposal was decided")
    if decided is not None:
        decided.update(runs)
    return outcomes


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
    batch: _Batch,
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


# -------------------------------------------------------------- entry points


async def set_state(
    svc: ServiceContext, kind: RunKind, run_id: str, msg: pb.StateProposal, cache: RunCache | None = None
) -> pb.ProposalResult:
    """SetFlowRunState / SetTaskRunState."""
    id_field = "flow_run_id" if kind is RunKind.FLOW else "task_run_id"
    run_id = parse_id(run_id, id_field)
    now = svc.clock()
    proposal = parse_proposal(run_id, msg, now)
    # Postgres: read (or take the run from the cache), decide, then one self-committing
    # conditional write (1 or 2 round trips, not 4), unless the proposal needs the cache-key
    # lock (task runs going RUNNING) or loses a race.
    optimistic = svc.db.is_postgres and (kind is RunKind.FLOW or proposal.state.type != RUNNING)
    cache = cache if svc.db.is_postgres and kind is RunKind.FLOW else None
    decided: dict[str, Run] = {}
    try:
        async with svc.db.autocommit() if optimistic else svc.db.transaction() as session:
            (outcome,) = await apply(
                session, svc, kind, [proposal], now, optimistic=optimistic, cache=cache, decided=decided
            )
    except StateRaced:
        if cache is not None:
            cache.drop([run_id])
        decided.clear()
        async with svc.db.transaction() as session:
            (outcome,) = await apply(session, svc, kind, [proposal], now, decided=decided)
    if cache is not None:
        cache.put(decided.values())
    if not outcome.found:
        raise NotFound(f"{kind.value} run {run_id} not found", field=id_field)
    return result_to_pb(outcome.verdict)


async def list_states(svc: ServiceContext, req: pb.ListStatesRequest) -> pb.ListStatesResponse:
    if bool(req.flow_run_id) == bool(req.task_run_id):
        raise InvalidArgument("give exactly one of flow_run_id or task_run_id", field="flow_run_id")
    field_name = "flow_run_id" if req.flow_run_id else "task_run_id"
    run_id = parse_id(req.flow_run_id or req.task_run_id, field_name)
    size = paging.page_size(req.page.page_size)
    c = run_states.c
    query = select(run_states).where(
        c.run_id == run_id, *after_key(c.timestamp, c.id, req.page.page_token, descending=False)
    )
    query = query.order_by(c.timestamp, c.id).limit(size)
    async with svc.db.read() as session:
        table = flow_runs if req.flow_run_id else task_runs
        if (await session.execute(select(table.c.id).where(table.c.id == run_id))).first() is None:
            kind = "flow run" if req.flow_run_id else "task run"
            raise NotFound(f"{kind} {run_id} not found", field=field_name)
        rows = (await session.execute(query)).all()
    return pb.ListStatesResponse(
        states=[state_to_pb(state_from_history_row(r)) for r in rows],
        next_page_token=next_token(rows, size, lambda r: r.timestamp),
    )
