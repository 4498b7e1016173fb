"""State proposals for flow runs and task runs: one path for both kinds,
for one proposal (SetFlowRunState, SetTaskRunState, the sweeper) and for a
SyncRuns batch of thousands.

Inside the caller's transaction: load the runs (locked on Postgres), the
states already written by resends and idempotency keys, the cache hits and
the cancel flags, all in a handful of statements; run the pure policy for
each proposal against the states held in memory; then write what it decided.
How runs are read and written (one statement each way, whatever the batch's
size) is :mod:`weir_orchestration.run_rows`; what a cache key resolves to is
:mod:`weir_orchestration.cache_keys`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from weir.errors import InvalidArgument, NotFound
from weir.v1 import orchestration_pb2 as pb
from weir_kit import paging
from weir_kit.prepared import Keyed, driver
from weir_kit.runtime import ServiceContext
from weir_kit.values import short_text
from weir_orchestration import events
from weir_orchestration.cache_keys import cache_lookup, hit_for, keys_asked_about, lock_cache_keys, track_cache_key
from weir_orchestration.filters import after_key, next_token
from weir_orchestration.models import flow_runs, run_states, task_runs
from weir_orchestration.policy import (
    COMPLETED,
    RUNNING,
    Decision,
    RunKind,
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
    state_from_history_row,
    state_from_pb,
    state_to_pb,
)
from weir_orchestration.run_rows import (
    Run,
    RunCache,
    StateRaced,
    Writes,
    load_runs,
    write,
)

_TICK = timedelta(microseconds=1)


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


_STATE_ROWS = Keyed(lambda listed: select(run_states).where(listed), run_states.c.id)


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


def _record(run: Run, written: State, p: Proposal, proposed: State, batch: Writes) -> None:
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
    batch = Writes()
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
