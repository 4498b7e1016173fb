"""The orchestration policy: which proposed state a run may enter.

Every rule is small and pure. It declares the state types it covers
(``from_types`` = the run's current type, ``None`` meaning "no state yet";
``to_types`` = the proposed type) and decides from a
:class:`TransitionContext` the service has already loaded. A rule answers
``None`` (no opinion) or a :class:`Verdict`:

* ACCEPT with a possibly modified state: the next rules see that state;
* REJECT with the state to write instead (or none) and a reason;
* WAIT with a delay; ABORT with a reason. These end the evaluation.

:data:`POLICY` is the ordered list; :func:`decide` runs it after the
proposal-level checks (``expected_state_id``, ``force``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, TypeVar

from weir._ids import new_id
from weir.v1 import common_pb2

SCHEDULED = common_pb2.SCHEDULED
PENDING = common_pb2.PENDING
RUNNING = common_pb2.RUNNING
PAUSED = common_pb2.PAUSED
COMPLETED = common_pb2.COMPLETED
FAILED = common_pb2.FAILED
CANCELLING = common_pb2.CANCELLING
CANCELLED = common_pb2.CANCELLED
CRASHED = common_pb2.CRASHED

ALL_TYPES = frozenset({SCHEDULED, PENDING, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLING, CANCELLED, CRASHED})
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, CRASHED})


_TYPE_NAMES = {t: common_pb2.StateType.Name(t) for t in common_pb2.StateType.values()}  # type: ignore[arg-type]
_DEFAULT_NAMES = {t: name.title() for t, name in _TYPE_NAMES.items()}


def type_name(state_type: int) -> str:
    """``RUNNING`` for ``common_pb2.RUNNING`` (a dict: every state written asks several times)."""
    try:
        return _TYPE_NAMES[state_type]
    except KeyError:
        return common_pb2.StateType.Name(state_type)  # type: ignore[arg-type]  # raises ValueError


def default_name(state_type: int) -> str:
    """``RUNNING`` -> ``Running``: the name a state gets when none is proposed."""
    try:
        return _DEFAULT_NAMES[state_type]
    except KeyError:
        return type_name(state_type).title()


class RunKind(StrEnum):
    FLOW = "flow"
    TASK = "task"


class Decision(Enum):
    """Same numbers as ``weir.v1.Decision``."""

    ACCEPT = 1
    REJECT = 2
    WAIT = 3
    ABORT = 4


_T = TypeVar("_T")


def evolve(obj: _T, **changes: Any) -> _T:
    """``dataclasses.replace`` for this module's frozen dataclasses, about five times cheaper.

    ``replace`` inspects the fields and runs ``__init__`` on every call, and a
    SyncRuns batch makes several copies per task run. None of these classes
    has a ``__post_init__`` or slots, so a copy of the instance's ``__dict__``
    with ``changes`` applied is the same object ``replace`` would build.
    """
    assert changes.keys() <= obj.__dataclass_fields__.keys(), f"unknown fields {set(changes)}"  # type: ignore[attr-defined]
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__, **changes)
    return new


@dataclass(frozen=True)
class StateDetails:
    scheduled_time: datetime | None = None
    cache_key: str = ""
    cache_expiration: datetime | None = None
    retry_count: int = 0
    result_ref: str = ""
    pause_timeout: datetime | None = None
    pause_reschedule: bool = False
    pause_key: str = ""
    cached_from_task_run_id: str = ""
    fencing_token: str = ""
    refresh_cache: bool = False


#: The details of most states: shared, so writers can tell "none set" by identity.
NO_DETAILS = StateDetails()


@dataclass(frozen=True)
class State:
    type: int
    name: str
    timestamp: datetime
    id: str = field(default_factory=new_id)
    message: str = ""
    details: StateDetails = NO_DETAILS
    data: Any = None

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL

    def describe(self) -> str:
        label = type_name(self.type)
        return label if self.name == default_name(self.type) else f"{label} ({self.name})"


@dataclass(frozen=True)
class RunPolicy:
    retries: int = 0
    retry_delay_seconds: tuple[float, ...] = ()

    def delay_before_retry(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1-based; the last entry repeats)."""
        if not self.retry_delay_seconds:
            return 0.0
        return float(self.retry_delay_seconds[min(attempt, len(self.retry_delay_seconds)) - 1])


@dataclass(frozen=True)
class TransitionContext:
    kind: RunKind
    current: State | None
    proposed: State
    now: datetime
    policy: RunPolicy = RunPolicy()
    #: How many times the run has entered RUNNING so far.
    run_count: int = 0
    #: Task runs: the cache key of the run (the proposal's details win when set).
    cache_key: str = ""
    #: Task runs: a still-valid COMPLETED state found for the cache key, with its run id.
    cached: State | None = None
    cached_run_id: str = ""
    #: The run (or, for a task run, its flow run) was asked to cancel.
    cancel_requested: bool = False
    #: The fencing token the proposal carries (workers).
    fencing_token: str = ""
    #: Task runs: another task run holds the cache key in RUNNING (its result may soon be a hit).
    cache_key_held: bool = False
    #: Task runs: when the flow run's current RUNNING state began (None when it is not RUNNING).
    parent_running_since: datetime | None = None


#: How long a task run waits between proposals while another run computes the same cache key.
CACHE_WAIT_SECONDS = 0.05
#: A run holding a cache key in RUNNING longer than this is ignored (its process may be gone).
CACHE_HOLD_SECONDS = 300.0


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    #: ACCEPT: the state to write. REJECT: the state written instead, or None.
    state: State | None = None
    reason: str = ""
    delay_seconds: float = 0.0
    rule: str = ""


def accept(state: State) -> Verdict:
    return Verdict(Decision.ACCEPT, state)


def reject(reason: str, state: State | None = None) -> Verdict:
    return Verdict(Decision.REJECT, state, reason)


RuleFn = Callable[[TransitionContext], Verdict | None]
_NO_STATE: frozenset[int | None] = frozenset({None})


@dataclass(frozen=True)
class Rule:
    name: str
    #: Current state types covered (``None`` inside means "no state yet").
    from_types: frozenset[int | None]
    to_types: frozenset[int]
    fn: RuleFn
    kinds: frozenset[RunKind] = frozenset(RunKind)

    def covers(self, ctx: TransitionContext) -> bool:
        current = ctx.current.type if ctx.current is not None else None
        return ctx.kind in self.kinds and current in self.from_types and ctx.proposed.type in self.to_types

    def __call__(self, ctx: TransitionContext) -> Verdict | None:
        return self.fn(ctx) if self.covers(ctx) else None


def rule(
    from_types: Sequence[int | None], to_types: Sequence[int], kinds: Sequence[RunKind] = tuple(RunKind)
) -> Callable[[RuleFn], Rule]:
    def wrap(fn: RuleFn) -> Rule:
        return Rule(fn.__name__, frozenset(from_types), frozenset(to_types), fn, frozenset(kinds))

    return wrap


# ------------------------------------------------------------------ rules


@rule(from_types=[CANCELLING, CANCELLED], to_types=[PENDING, RUNNING])
def abort_cancelled_run(ctx: TransitionContext) -> Verdict | None:
    assert ctx.current is not None
    return Verdict(Decision.ABORT, ctx.current, f"run is {type_name(ctx.current.type)}: it must not start")


@rule(from_types=[None, *ALL_TYPES], to_types=[PENDING, RUNNING])
def abort_when_cancel_requested(ctx: TransitionContext) -> Verdict | None:
    if ctx.cancel_requested:
        return Verdict(Decision.ABORT, ctx.current, "the run was asked to cancel")
    return None


@rule(from_types=list(ALL_TYPES), to_types=list(ALL_TYPES))
def reject_stale_fencing_token(ctx: TransitionContext) -> Verdict | None:
    """A worker's proposals carry the token of its assignment; only the current holder may move the run.

    A token is handed out by a claim (PENDING from SCHEDULED on a run nobody
    holds); putting a run back to SCHEDULED without a token frees it, so a
    worker that lost the run (its stream dropped, the run was given to
    another) can no longer move it.
    """
    assert ctx.current is not None
    token = ctx.fencing_token
    held = ctx.current.details.fencing_token
    if not token or token == held:
        return None
    if not held and ctx.current.type == SCHEDULED and ctx.proposed.type == PENDING:
        return None  # a claim
    return reject(f"fencing token {token!r} is stale: the run is not held by that assignment")


@rule(from_types=list(TERMINAL), to_types=list(ALL_TYPES))
def prevent_leaving_terminal(ctx: TransitionContext) -> Verdict | None:
    assert ctx.current is not None
    if ctx.kind is RunKind.FLOW and ctx.proposed.type == SCHEDULED:
        return None  # a rerun of a finished flow run
    if _left_by_earlier_attempt(ctx) and (
        ctx.current.type in (FAILED, CRASHED) or _completed_without_result(ctx.current)
    ):
        # An earlier attempt of its flow run left it failed, or completed with no result anyone can read
        # (not persisted; the process that held it is gone): the retried flow runs it again, like Prefect.
        return None
    return reject(f"run is {ctx.current.describe()}, a terminal state: it cannot move to {ctx.proposed.describe()}")


def _completed_without_result(state: State) -> bool:
    return state.type == COMPLETED and not state.details.result_ref


def _left_by_earlier_attempt(ctx: TransitionContext) -> bool:
    """A task run asked to start again, last moved before its flow run's current attempt began.

    Its flow run left RUNNING since (crashed, retried), so whatever held the
    task run then is gone; the new attempt may take it over.
    """
    assert ctx.current is not None
    return (
        ctx.kind is RunKind.TASK
        and ctx.proposed.type in (PENDING, RUNNING)
        and ctx.parent_running_since is not None
        and ctx.current.timestamp < ctx.parent_running_since
    )


@rule(from_types=[PENDING, RUNNING, CANCELLING], to_types=[PENDING])
def prevent_duplicate_pending(ctx: TransitionContext) -> Verdict | None:
    assert ctx.current is not None
    if _left_by_earlier_attempt(ctx):
        return None  # orphaned by a crashed attempt of its flow run: the retry runs it again
    return reject(f"run is already {type_name(ctx.current.type)}")


@rule(from_types=[RUNNING], to_types=[RUNNING])
def prevent_duplicate_running(ctx: TransitionContext) -> Verdict | None:
    if _left_by_earlier_attempt(ctx):
        return None
    return reject("run is already RUNNING")


@rule(from_types=[SCHEDULED], to_types=[PENDING, RUNNING])
def wait_for_scheduled_time(ctx: TransitionContext) -> Verdict | None:
    assert ctx.current is not None
    when = ctx.current.details.scheduled_time
    if when is not None and when > ctx.now:
        delay = (when - ctx.now).total_seconds()
        return Verdict(Decision.WAIT, ctx.current, f"run is scheduled for {when.isoformat()}", delay)
    return None


@rule(from_types=[None, *ALL_TYPES], to_types=[RUNNING], kinds=[RunKind.TASK])
def cache_lookup(ctx: TransitionContext) -> Verdict | None:
    key = ctx.proposed.details.cache_key or ctx.cache_key
    if not key or ctx.proposed.details.refresh_cache:
        return None
    if ctx.cached is None:
        if ctx.cache_key_held:
            # Two calls with one key run once: this one waits for the other's result.
            reason = f"another task run is computing cache key {key!r}"
            return Verdict(Decision.WAIT, ctx.current, reason, CACHE_WAIT_SECONDS)
        return None
    hit = ctx.cached.details
    state = State(
        type=COMPLETED,
        name="Cached",
        timestamp=ctx.proposed.timestamp,
        message=f"result found in cache for key {key!r}",
        details=StateDetails(
            cache_key=key,
            cache_expiration=hit.cache_expiration,
            result_ref=hit.result_ref,
            cached_from_task_run_id=ctx.cached_run_id,
        ),
        data=ctx.cached.data,
    )
    return reject("result found in cache", state)


@rule(from_types=[RUNNING], to_types=[FAILED, CRASHED])
def enforce_retries(ctx: TransitionContext) -> Verdict | None:
    if ctx.proposed.type == CRASHED and ctx.kind is not RunKind.FLOW:
        return None
    if ctx.run_count > ctx.policy.retries:
        return None
    attempt = ctx.run_count
    delay = ctx.policy.delay_before_retry(attempt)
    state = State(
        type=SCHEDULED,
        name="AwaitingRetry",
        timestamp=ctx.proposed.timestamp,
        message=ctx.proposed.message or f"retry {attempt} of {ctx.policy.retries}",
        details=evolve(
            ctx.proposed.details,
            scheduled_time=ctx.now + timedelta(seconds=delay),
            retry_count=attempt,
            result_ref="",
            # The worker retrying in its own process keeps the run; a crash found by a sweeper frees it.
            fencing_token=ctx.fencing_token or ctx.proposed.details.fencing_token,
        ),
        data=ctx.proposed.data,
    )
    return reject(f"retry {attempt} of {ctx.policy.retries} in {delay:g}s", state)


@rule(from_types=[None, *ALL_TYPES], to_types=list(ALL_TYPES))
def copy_details(ctx: TransitionContext) -> Verdict | None:
    if ctx.current is None:
        return None
    old, new = ctx.current.details, ctx.proposed.details
    changes: dict[str, Any] = {}
    if ctx.current.type == SCHEDULED and ctx.proposed.type == PENDING and new.scheduled_time is None:
        changes["scheduled_time"] = old.scheduled_time
    if not new.cache_key and old.cache_key:
        changes["cache_key"] = old.cache_key
    if new.cache_expiration is None and old.cache_expiration is not None:
        changes["cache_expiration"] = old.cache_expiration
    # A result belongs to a finished attempt: it never rides into a new one.
    if not new.result_ref and old.result_ref and ctx.proposed.type in TERMINAL:
        changes["result_ref"] = old.result_ref
    if not new.fencing_token:
        # The holder's token rides on every state until the run is put back to SCHEDULED without one.
        token = ctx.fencing_token or (old.fencing_token if ctx.proposed.type != SCHEDULED else "")
        if token:
            changes["fencing_token"] = token
    if not changes:
        return None
    return accept(evolve(ctx.proposed, details=evolve(new, **changes)))


#: The rules in the order they run.
POLICY: tuple[Rule, ...] = (
    abort_cancelled_run,
    abort_when_cancel_requested,
    reject_stale_fencing_token,
    prevent_leaving_terminal,
    prevent_duplicate_pending,
    prevent_duplicate_running,
    wait_for_scheduled_time,
    cache_lookup,
    enforce_retries,
    copy_details,
)


# ------------------------------------------------- proposal-level checks


def check_expected_state(expected_state_id: str, current: State | None) -> Verdict | None:
    """ABORT when the proposal was made against a state the run has left."""
    if not expected_state_id:
        return None
    if current is not None and current.id == expected_state_id:
        return None
    now = f"{current.describe()} (id {current.id})" if current else "no state"
    return Verdict(
        Decision.ABORT,
        current,
        f"expected state {expected_state_id} but the run is in {now}",
        rule="expected_state_id",
    )


def replay(first: State) -> Verdict:
    """The answer to a resent proposal (same idempotency key or state id)."""
    return Verdict(Decision.ACCEPT, first, "resent proposal: returning the first answer", rule="idempotency_key")


def decide(
    ctx: TransitionContext, *, force: bool = False, expected_state_id: str = "", rules: Sequence[Rule] = POLICY
) -> Verdict:
    """Run the proposal-level checks and then the rules, in order."""
    verdict = check_expected_state(expected_state_id, ctx.current)
    if verdict is not None:
        return verdict
    if force:
        return Verdict(Decision.ACCEPT, ctx.proposed, "forced", rule="force")
    for r in rules:
        verdict = r(ctx)
        if verdict is None:
            continue
        if not verdict.rule:
            verdict = evolve(verdict, rule=r.name)
        if verdict.decision is Decision.ACCEPT:
            assert verdict.state is not None
            if verdict.state is not ctx.proposed:
                ctx = evolve(ctx, proposed=verdict.state)
            continue
        return verdict
    return Verdict(Decision.ACCEPT, ctx.proposed)


# ------------------------------------------------------------ bookkeeping


@dataclass(frozen=True)
class RunTimes:
    """The counters a run row keeps beside its state."""

    run_count: int = 0
    expected_start_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    total_run_time: float = 0.0


def account(times: RunTimes, old: State | None, new: State) -> RunTimes:
    """The run's counters after ``new`` is written on top of ``old``."""
    changes: dict[str, Any] = {}
    if new.type == RUNNING:
        changes["run_count"] = times.run_count + 1
        if times.start_time is None:
            changes["start_time"] = new.timestamp
    if old is not None and old.type == RUNNING and new.type != RUNNING:
        ran = (new.timestamp - old.timestamp).total_seconds()
        changes["total_run_time"] = times.total_run_time + max(ran, 0.0)
    if new.is_terminal:
        changes["end_time"] = new.timestamp
    elif new.type == RUNNING:
        changes["end_time"] = None
    if new.details.scheduled_time is not None and new.type == SCHEDULED:
        changes["expected_start_time"] = new.details.scheduled_time
    elif times.expected_start_time is None and new.type in (PENDING, RUNNING):
        changes["expected_start_time"] = new.details.scheduled_time or new.timestamp
    return evolve(times, **changes) if changes else times
