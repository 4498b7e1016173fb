"""Every orchestration rule, without a database: accept and refuse cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from weir_orchestration import policy
from weir_orchestration.policy import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    CRASHED,
    FAILED,
    PENDING,
    POLICY,
    RUNNING,
    SCHEDULED,
    Decision,
    RunKind,
    RunPolicy,
    RunTimes,
    State,
    StateDetails,
    TransitionContext,
    account,
    decide,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def st(state_type: int, name: str = "", at: datetime = NOW, **details: object) -> State:
    return State(state_type, name or policy.default_name(state_type), at, details=StateDetails(**details))  # type: ignore[arg-type]


def ctx(current: State | None, proposed: State, **kwargs: object) -> TransitionContext:
    kwargs.setdefault("kind", RunKind.FLOW)
    return TransitionContext(current=current, proposed=proposed, now=NOW, **kwargs)  # type: ignore[arg-type]


def test_policy_is_one_ordered_list_of_named_rules() -> None:
    names = [r.name for r in POLICY]
    assert len(names) == len(set(names))
    assert names.index("abort_cancelled_run") < names.index("prevent_leaving_terminal")
    assert names[-1] == "copy_details"


def test_accepts_ordinary_lifecycle() -> None:
    assert decide(ctx(None, st(PENDING))).decision is Decision.ACCEPT
    assert decide(ctx(st(PENDING), st(RUNNING))).decision is Decision.ACCEPT
    assert decide(ctx(st(RUNNING), st(COMPLETED))).decision is Decision.ACCEPT


# -- prevent_leaving_terminal


@pytest.mark.parametrize("terminal", [COMPLETED, FAILED, CANCELLED, CRASHED])
def test_no_transition_out_of_terminal(terminal: int) -> None:
    v = policy.prevent_leaving_terminal(ctx(st(terminal), st(RUNNING)))
    assert v is not None and v.decision is Decision.REJECT
    assert policy.type_name(terminal) in v.reason and "RUNNING" in v.reason


def test_flow_run_may_be_rerun_from_terminal_to_scheduled() -> None:
    assert policy.prevent_leaving_terminal(ctx(st(COMPLETED), st(SCHEDULED))) is None


def test_task_run_may_not_be_rescheduled_from_terminal() -> None:
    v = policy.prevent_leaving_terminal(ctx(st(COMPLETED), st(SCHEDULED), kind=RunKind.TASK))
    assert v is not None and v.decision is Decision.REJECT


def test_terminal_rule_ignores_non_terminal_current() -> None:
    assert policy.prevent_leaving_terminal(ctx(st(RUNNING), st(COMPLETED))) is None


# -- duplicates


@pytest.mark.parametrize("current", [PENDING, RUNNING, CANCELLING])
def test_no_duplicate_pending(current: int) -> None:
    v = policy.prevent_duplicate_pending(ctx(st(current), st(PENDING)))
    assert v is not None and v.decision is Decision.REJECT
    assert "already" in v.reason


def test_pending_from_scheduled_is_fine() -> None:
    assert policy.prevent_duplicate_pending(ctx(st(SCHEDULED), st(PENDING))) is None
    assert policy.prevent_duplicate_pending(ctx(None, st(PENDING))) is None


def test_no_duplicate_running() -> None:
    v = policy.prevent_duplicate_running(ctx(st(RUNNING), st(RUNNING)))
    assert v is not None and v.decision is Decision.REJECT and v.reason == "run is already RUNNING"
    assert policy.prevent_duplicate_running(ctx(st(PENDING), st(RUNNING))) is None


# -- retries


def test_failed_with_retries_left_becomes_awaiting_retry() -> None:
    c = ctx(st(RUNNING), st(FAILED), policy=RunPolicy(2, (5.0, 30.0)), run_count=1)
    v = policy.enforce_retries(c)
    assert v is not None and v.decision is Decision.REJECT
    assert v.state is not None and v.state.type == SCHEDULED and v.state.name == "AwaitingRetry"
    assert v.state.details.scheduled_time == NOW + timedelta(seconds=5)
    assert v.state.details.retry_count == 1


def test_retry_delay_last_entry_repeats() -> None:
    c = ctx(st(RUNNING), st(FAILED), policy=RunPolicy(5, (5.0, 30.0)), run_count=4)
    v = policy.enforce_retries(c)
    assert v is not None and v.state is not None
    assert v.state.details.scheduled_time == NOW + timedelta(seconds=30)


def test_failed_without_retries_left_is_accepted() -> None:
    assert policy.enforce_retries(ctx(st(RUNNING), st(FAILED), policy=RunPolicy(1), run_count=2)) is None
    assert policy.enforce_retries(ctx(st(RUNNING), st(FAILED), run_count=1)) is None


def test_crashed_retries_for_flow_runs_only() -> None:
    flow = policy.enforce_retries(ctx(st(RUNNING), st(CRASHED), policy=RunPolicy(1), run_count=1))
    assert flow is not None and flow.state is not None and flow.state.name == "AwaitingRetry"
    task = policy.enforce_retries(ctx(st(RUNNING), st(CRASHED), policy=RunPolicy(1), run_count=1, kind=RunKind.TASK))
    assert task is None


# -- scheduled time


def test_wait_until_scheduled_time() -> None:
    later = NOW + timedelta(seconds=40)
    v = policy.wait_for_scheduled_time(ctx(st(SCHEDULED, scheduled_time=later), st(PENDING)))
    assert v is not None and v.decision is Decision.WAIT and v.delay_seconds == pytest.approx(40)


def test_no_wait_when_due() -> None:
    earlier = NOW - timedelta(seconds=1)
    assert policy.wait_for_scheduled_time(ctx(st(SCHEDULED, scheduled_time=earlier), st(RUNNING))) is None
    assert policy.wait_for_scheduled_time(ctx(st(SCHEDULED), st(RUNNING))) is None


# -- cancellation


@pytest.mark.parametrize("current", [CANCELLING, CANCELLED])
@pytest.mark.parametrize("proposed", [PENDING, RUNNING])
def test_no_start_of_cancelled_run(current: int, proposed: int) -> None:
    v = decide(ctx(st(current), st(proposed)))
    assert v.decision is Decision.ABORT and v.rule == "abort_cancelled_run"


def test_cancelling_may_finish_as_cancelled() -> None:
    assert decide(ctx(st(CANCELLING), st(CANCELLED))).decision is Decision.ACCEPT


def test_cancel_requested_aborts_start() -> None:
    v = policy.abort_when_cancel_requested(ctx(st(PENDING), st(RUNNING), cancel_requested=True))
    assert v is not None and v.decision is Decision.ABORT
    assert policy.abort_when_cancel_requested(ctx(st(PENDING), st(RUNNING))) is None


# -- fencing


def test_stale_fencing_token_rejected() -> None:
    held = st(PENDING, fencing_token="a")
    v = policy.reject_stale_fencing_token(ctx(held, st(RUNNING), fencing_token="b"))
    assert v is not None and v.decision is Decision.REJECT
    assert policy.reject_stale_fencing_token(ctx(held, st(RUNNING), fencing_token="a")) is None


def test_a_claim_takes_a_free_run_but_a_freed_run_refuses_its_old_holder() -> None:
    free = st(SCHEDULED)
    assert policy.reject_stale_fencing_token(ctx(free, st(PENDING), fencing_token="new")) is None
    # Put back to SCHEDULED without a token: whoever held it may not start it again.
    v = policy.reject_stale_fencing_token(ctx(free, st(RUNNING), fencing_token="old"))
    assert v is not None and v.decision is Decision.REJECT
    # A proposal without a token (an operator, a sweeper) is not fenced.
    assert policy.reject_stale_fencing_token(ctx(st(RUNNING, fencing_token="a"), st(CANCELLING))) is None


def test_the_token_rides_on_every_state_until_rescheduled_without_one() -> None:
    running = decide(ctx(st(PENDING, fencing_token="t"), st(RUNNING), fencing_token="t"))
    assert running.state is not None and running.state.details.fencing_token == "t"
    cancelling = decide(ctx(st(RUNNING, fencing_token="t"), st(CANCELLING)))
    assert cancelling.state is not None and cancelling.state.details.fencing_token == "t"
    freed = decide(ctx(st(COMPLETED, fencing_token="t"), st(SCHEDULED)))
    assert freed.state is not None and freed.state.details.fencing_token == ""


def test_retry_in_the_workers_process_keeps_the_token_and_a_swept_crash_frees_it() -> None:
    kw = {"policy": RunPolicy(retries=1), "run_count": 1}
    retry = decide(ctx(st(RUNNING, fencing_token="t"), st(FAILED), fencing_token="t", **kw))
    assert retry.state is not None and retry.state.name == "AwaitingRetry"
    assert retry.state.details.fencing_token == "t"
    swept = decide(ctx(st(RUNNING, fencing_token="t"), st(CRASHED), **kw))
    assert swept.state is not None and swept.state.name == "AwaitingRetry"
    assert swept.state.details.fencing_token == ""


# -- cache


def _cached() -> State:
    return st(COMPLETED, result_ref="s3://bucket/result", cache_key="k")


def test_cache_hit_answers_completed_cached() -> None:
    c = ctx(st(PENDING), st(RUNNING), kind=RunKind.TASK, cache_key="k", cached=_cached(), cached_run_id="other")
    v = policy.cache_lookup(c)
    assert v is not None and v.decision is Decision.REJECT
    assert v.state is not None and v.state.type == COMPLETED and v.state.name == "Cached"
    assert v.state.details.result_ref == "s3://bucket/result"
    assert v.state.details.cached_from_task_run_id == "other"


def test_cache_refresh_or_miss_runs() -> None:
    refresh = st(RUNNING, refresh_cache=True)
    c = ctx(st(PENDING), refresh, kind=RunKind.TASK, cache_key="k", cached=_cached(), cached_run_id="other")
    assert policy.cache_lookup(c) is None
    assert policy.cache_lookup(ctx(st(PENDING), st(RUNNING), kind=RunKind.TASK, cache_key="k")) is None
    assert policy.cache_lookup(ctx(st(PENDING), st(RUNNING), kind=RunKind.TASK, cached=_cached())) is None


def test_cache_key_held_by_another_run_waits() -> None:
    c = ctx(st(PENDING), st(RUNNING), kind=RunKind.TASK, cache_key="k", cache_key_held=True)
    v = policy.cache_lookup(c)
    assert v is not None and v.decision is Decision.WAIT and v.delay_seconds > 0
    # A hit wins over a holder; a refresh never waits.
    hit = replace(c, cached=_cached(), cached_run_id="other")
    assert policy.cache_lookup(hit).decision is Decision.REJECT  # type: ignore[union-attr]
    assert policy.cache_lookup(replace(c, proposed=st(RUNNING, refresh_cache=True))) is None
    assert policy.cache_lookup(replace(c, cache_key="")) is None


def test_task_failed_in_an_earlier_flow_attempt_may_run_again() -> None:
    earlier = st(FAILED, at=NOW - timedelta(seconds=5))
    c = ctx(earlier, st(RUNNING), kind=RunKind.TASK, parent_running_since=NOW - timedelta(seconds=1))
    assert decide(c).decision is Decision.ACCEPT
    # Not when it failed during the flow run's current attempt, nor when it completed with a result.
    assert decide(replace(c, parent_running_since=NOW - timedelta(seconds=9))).decision is Decision.REJECT
    kept = st(COMPLETED, at=NOW - timedelta(seconds=5), result_ref="file:///r")
    assert decide(replace(c, current=kept)).decision is Decision.REJECT
    assert decide(replace(c, parent_running_since=None)).decision is Decision.REJECT
    assert decide(replace(c, kind=RunKind.FLOW)).decision is Decision.REJECT


def test_task_completed_without_a_result_in_an_earlier_flow_attempt_runs_again() -> None:
    """Its result was never persisted and the process that held it may be gone: run it again (Prefect)."""
    earlier = st(COMPLETED, at=NOW - timedelta(seconds=5))
    c = ctx(earlier, st(RUNNING), kind=RunKind.TASK, parent_running_since=NOW - timedelta(seconds=1))
    assert decide(c).decision is Decision.ACCEPT
    assert decide(replace(c, parent_running_since=NOW - timedelta(seconds=9))).decision is Decision.REJECT


def test_task_left_running_by_a_crashed_flow_attempt_may_start_again() -> None:
    """The retry of a flow run that crashed mid-task takes the orphaned task run over."""
    for left in (PENDING, RUNNING):
        orphan = st(left, at=NOW - timedelta(seconds=5))
        for proposed in (PENDING, RUNNING):
            c = ctx(orphan, st(proposed), kind=RunKind.TASK, parent_running_since=NOW - timedelta(seconds=1))
            assert decide(c).decision is Decision.ACCEPT, (left, proposed)
            if (left, proposed) == (PENDING, RUNNING):
                continue  # an ordinary start
            # Within the current attempt it is a genuine duplicate; and flow runs never get this.
            assert decide(replace(c, parent_running_since=NOW - timedelta(seconds=9))).decision is Decision.REJECT
            assert decide(replace(c, parent_running_since=None)).decision is Decision.REJECT
            assert decide(replace(c, kind=RunKind.FLOW)).decision is Decision.REJECT


def test_cache_is_for_task_runs_only() -> None:
    c = ctx(st(PENDING), st(RUNNING), cache_key="k", cached=_cached(), cached_run_id="other")
    assert policy.cache_lookup(c) is None


# -- copy details


def test_scheduled_time_carried_to_pending() -> None:
    when = NOW - timedelta(seconds=3)
    v = policy.copy_details(ctx(st(SCHEDULED, scheduled_time=when), st(PENDING)))
    assert v is not None and v.decision is Decision.ACCEPT
    assert v.state is not None and v.state.details.scheduled_time == when


def test_cache_key_and_result_kept_when_omitted() -> None:
    v = policy.copy_details(ctx(st(RUNNING, cache_key="k", result_ref="r"), st(COMPLETED)))
    assert v is not None and v.state is not None
    assert v.state.details.cache_key == "k" and v.state.details.result_ref == "r"


def test_copy_details_keeps_what_proposal_sets() -> None:
    v = policy.copy_details(ctx(st(RUNNING, cache_key="k"), st(COMPLETED, cache_key="new")))
    assert v is None
    assert policy.copy_details(ctx(None, st(PENDING))) is None


def test_copy_details_flows_through_decide() -> None:
    when = NOW - timedelta(seconds=3)
    v = decide(ctx(st(SCHEDULED, scheduled_time=when), st(PENDING)))
    assert v.decision is Decision.ACCEPT and v.state is not None and v.state.details.scheduled_time == when


# -- proposal-level checks


def test_expected_state_id_mismatch_aborts() -> None:
    current = st(RUNNING)
    v = decide(ctx(current, st(COMPLETED)), expected_state_id="not-it")
    assert v.decision is Decision.ABORT and "RUNNING" in v.reason and current.id in v.reason
    assert decide(ctx(current, st(COMPLETED)), expected_state_id=current.id).decision is Decision.ACCEPT


def test_force_skips_rules() -> None:
    v = decide(ctx(st(COMPLETED), st(RUNNING)), force=True)
    assert v.decision is Decision.ACCEPT and v.rule == "force"
    assert decide(ctx(st(COMPLETED), st(RUNNING))).decision is Decision.REJECT


def test_replay_returns_first_state() -> None:
    first = st(RUNNING)
    v = policy.replay(first)
    assert v.decision is Decision.ACCEPT and v.state is first


def test_decide_reports_the_rule() -> None:
    v = decide(ctx(st(RUNNING), st(PENDING)))
    assert v.rule == "prevent_duplicate_pending"


# -- bookkeeping


def test_account_running_counts_and_start_time() -> None:
    t = account(RunTimes(), st(PENDING), st(RUNNING))
    assert t.run_count == 1 and t.start_time == NOW and t.expected_start_time == NOW
    t2 = account(t, st(SCHEDULED), st(RUNNING, at=NOW + timedelta(seconds=10)))
    assert t2.run_count == 2 and t2.start_time == NOW


def test_account_terminal_sets_end_and_run_time() -> None:
    running = st(RUNNING)
    done = st(COMPLETED, at=NOW + timedelta(seconds=7))
    t = account(RunTimes(run_count=1, start_time=NOW), running, done)
    assert t.end_time == done.timestamp and t.total_run_time == pytest.approx(7)


def test_account_expected_start_from_scheduled_time() -> None:
    when = NOW + timedelta(hours=1)
    t = account(RunTimes(), None, st(SCHEDULED, scheduled_time=when))
    assert t.expected_start_time == when


def test_state_describe_names_both() -> None:
    assert replace(st(SCHEDULED), name="Late").describe() == "SCHEDULED (Late)"
    assert st(RUNNING).describe() == "RUNNING"


def test_evolve_builds_what_dataclasses_replace_builds() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = State(RUNNING, "Running", now, message="m", details=StateDetails(cache_key="k"))
    times = policy.RunTimes(run_count=2, start_time=now)
    verdict = policy.Verdict(policy.Decision.REJECT, state, "why")
    for original, changes in [
        (state, {"timestamp": now + timedelta(seconds=1)}),
        (state, {"details": StateDetails(retry_count=3)}),
        (times, {"run_count": 0, "end_time": now}),
        (verdict, {"rule": "a_rule", "state": None}),
    ]:
        evolved = policy.evolve(original, **changes)
        assert evolved == replace(original, **changes)
        assert type(evolved) is type(original) and evolved is not original
        assert original == replace(original)  # the original is untouched
    with pytest.raises(AssertionError, match="unknown"):
        policy.evolve(state, no_such_field=1)
