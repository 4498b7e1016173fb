"""One computation per cache key across concurrent transactions.

The policy rule ``cache_lookup`` answers WAIT to a task run proposing RUNNING with a key
that another task run holds in RUNNING. That only works if the second
transaction can see the first one's RUNNING row: two SyncRuns streams (two
processes) proposing the same key at the same moment would each find no
holder and both run. So, before looking for hits and holders, a transaction
takes a Postgres transaction-level advisory lock per key it asks about; the
second waits for the first to commit and then sees its holder (READ
COMMITTED reads with a fresh snapshot per statement).

Keys are folded into :data:`BUCKETS` lock ids, taken in ascending order in
one statement (no deadlock between two batches with overlapping keys, and a
batch of a thousand keys takes at most ``BUCKETS`` locks of the shared lock
table). Two keys sharing a bucket only make one transaction wait for the
other's commit. SQLite needs nothing: its write transactions already run
one at a time (``BEGIN IMMEDIATE`` under the service's write lock).

Then, in the same transaction, :func:`cache_lookup` reads each key's hits and holders, and as
the batch is decided in order :func:`track_cache_key` keeps them current for the proposals after
each decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from weir_orchestration.models import task_runs
from weir_orchestration.policy import CACHE_HOLD_SECONDS, COMPLETED, RUNNING, RunKind, State
from weir_orchestration.proto import state_from_run_row

if TYPE_CHECKING:
    from weir_orchestration.run_rows import Run
    from weir_orchestration.states import Proposal

#: Lock ids the keys fold into.
BUCKETS = 256
#: A constant first half of the two-int advisory lock id, so these locks share no id with others.
_NAMESPACE = 0x57_43_4B  # "WCK"

_LOCK = text(
    "SELECT pg_advisory_xact_lock(:namespace, b) FROM unnest(CAST(:buckets AS integer[])) WITH ORDINALITY AS t(b, n) "
    "ORDER BY n"
)


def buckets(keys: Iterable[str]) -> list[int]:
    """The sorted lock ids of ``keys``."""
    return sorted({int.from_bytes(hashlib.blake2b(k.encode(), digest_size=4).digest()) % BUCKETS for k in keys})


async def lock_cache_keys(session: AsyncSession, keys: Iterable[str], *, is_postgres: bool) -> None:
    """Wait until no other open transaction is deciding on any of ``keys`` (Postgres)."""
    if not is_postgres:
        return
    ids = buckets(k for k in keys if k)
    if ids:
        await session.execute(_LOCK, {"namespace": _NAMESPACE, "buckets": ids})


#: What :func:`state_from_run_row` reads.
_STATE_COLUMNS = [
    task_runs.c[name]
    for name in (
        "state_id",
        "state_type",
        "state_name",
        "state_timestamp",
        "state_message",
        "state_details",
        "state_data",
    )
]
#: Per cache key, its valid results, newest first: (task run id, its COMPLETED state).
Hits = dict[str, list[tuple[str, State]]]
#: Per cache key, the task runs RUNNING with it.
Holders = dict[str, set[str]]


async def cache_lookup(session: AsyncSession, keys: set[str], now: datetime, newest: int) -> tuple[Hits, Holders]:
    """Per cache key: the still-valid COMPLETED task run states (hits, newest first), and the task
    runs RUNNING with it (holders: their results may soon be hits).

    One statement, so one snapshot: a holder that completes meanwhile is seen either RUNNING or
    COMPLETED. Two statements could miss it in both (RUNNING gone from the second, COMPLETED not
    yet in the first) and run its body a second time. The runs of the batch being decided are
    read too: as the batch is decided in order, :func:`track_cache_key` moves them along, so a
    proposal sees each of them as the proposals before it left it. ``newest``: how many hits and
    holders per key to read, newest first: one more than the batch has runs, as only those can be
    taken away (by :func:`track_cache_key`) or passed over (a run is no hit of itself), so the
    rest always holds the answer.
    """
    if not keys:
        return {}, {}
    c = task_runs.c
    since = now - timedelta(seconds=CACHE_HOLD_SECONDS)
    valid_hit = and_(c.state_type == "COMPLETED", or_(c.cache_expiration.is_(None), c.cache_expiration > now))
    holding = and_(c.state_type == "RUNNING", c.state_timestamp > since)
    rank = func.row_number().over(partition_by=(c.cache_key, c.state_type), order_by=c.state_timestamp.desc())
    columns = [c.id, c.cache_key, *_STATE_COLUMNS, rank.label("rank")]
    ranked = select(*columns).where(c.cache_key.in_(keys), or_(valid_hit, holding)).subquery()
    query = select(ranked).where(ranked.c.rank <= newest).order_by(ranked.c.state_timestamp.desc())
    hits: Hits = {}
    holders: Holders = {}
    for row in (await session.execute(query)).all():
        if row.state_type == "RUNNING":
            holders.setdefault(row.cache_key, set()).add(row.id)
            continue
        state = state_from_run_row(row)
        if state is not None:
            hits.setdefault(row.cache_key, []).append((row.id, state))
    return hits, holders


def hit_for(hits: Hits, key: str, run_id: str) -> tuple[str, State] | None:
    """The newest result of ``key`` that another task run computed (a run is no hit of itself)."""
    return next((hit for hit in hits.get(key, ()) if hit[0] != run_id), None)


def keys_asked_about(kind: RunKind, proposals: Sequence[Proposal], runs: Mapping[str, Run]) -> set[str]:
    """The cache keys a batch's RUNNING proposals may be decided on: the key each of their runs
    was loaded with, and any key a proposal of the batch brings one of those runs (an earlier
    proposal can give a run a new key). A batch with no RUNNING (the COMPLETED states a flow
    sends) asks about none, and so takes no lock and reads nothing."""
    if kind is not RunKind.TASK:
        return set()
    starting = {p.run_id for p in proposals if p.state.type == RUNNING and p.run_id in runs}
    keys = {runs[run_id].cache_key for run_id in starting}
    keys.update(p.state.details.cache_key for p in proposals if p.run_id in starting)
    return keys - {""}


def track_cache_key(run: Run, old_key: str, written: State, hits: Hits, holders: Holders, now: datetime) -> None:
    """Later proposals of the same batch see this run's hold on its cache key, or its result, and
    no longer see what it held or had computed before (``old_key``: its key before this state)."""
    for key in {old_key, run.cache_key} - {""}:
        holders.get(key, set()).discard(run.ref.id)
        if key in hits:
            hits[key] = [hit for hit in hits[key] if hit[0] != run.ref.id]
    key = run.cache_key
    if written.type == RUNNING:
        holders.setdefault(key, set()).add(run.ref.id)
        return
    expires = written.details.cache_expiration
    if written.type == COMPLETED and written.name != "Cached" and (expires is None or expires > now):
        hits.setdefault(key, []).insert(0, (run.ref.id, written))
