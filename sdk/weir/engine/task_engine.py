"""One task run, from call to final state (see steps.py for how it is driven).

The hot path sends records and does not wait: the task-run creation, its
RUNNING and its COMPLETED state leave in the next SyncRuns batch. Only a
proposal that needs the server's decision waits: a cache lookup, or a
failure the server may turn into a retry with a delay.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from weir.cache_policies import CallInfo, KeyFunction
from weir.context import FlowRunContext, TaskRunContext, tags_ctx, task_run_ctx
from weir.engine import identity
from weir.engine.interrupts import Cancel, RunCancelled
from weir.engine.runtime import Runtime
from weir.engine.states import (
    CANCELLED,
    COMPLETED,
    CRASHED,
    FAILED,
    PENDING,
    RUNNING,
    describe,
    new_state,
    to_user_state,
)
from weir.engine.steps import Call, Sleep, Steps, Wait
from weir.errors import InvalidArgument
from weir.results import LocalFileSystem, encode, serializer_for
from weir.v1 import common_pb2
from weir.v1 import orchestration_pb2 as pb

if TYPE_CHECKING:
    from weir.tasks import Task

CACHED = "Cached"


class TaskRunFailed(Exception):
    """Raised by a task call whose run ended Failed for a reason that is not an exception of its own."""


def plan_identity(task_key: str, flow: FlowRunContext, params: Mapping[str, Any]) -> tuple[str, str, int]:
    """(task run id, dynamic key, call number), taken in call order on the caller's thread.

    The id comes from the input hash and its occurrence; the call number (the
    Nth call of this task in the flow run) only names the run for people.
    """
    in_hash = identity.input_hash(params)
    occurrence = flow.next_occurrence(task_key, in_hash)
    number = flow.next_occurrence(task_key, "#")  # "#" is never a hash: a per-task call counter
    dynamic_key = f"{in_hash}-{occurrence}"
    return identity.task_run_id(flow.flow_run_id, task_key, dynamic_key), dynamic_key, number


def task_run(
    task: Task[Any, Any],
    runtime: Runtime,
    flow: FlowRunContext,
    params: Mapping[str, Any],
    call_args: tuple[tuple[Any, ...], dict[str, Any]],
    return_state: bool,
    planned: tuple[str, str, int],
    body: Any = None,
) -> Steps:
    opts = task.options
    name = opts.name or task.fn.__name__
    run_id, dynamic_key, occurrence = planned
    tags = opts.tags | tags_ctx.get() | flow.tags

    cache_key = ""
    policy = opts.cache_policy
    if opts.cache_key_fn is not None:
        policy = KeyFunction(opts.cache_key_fn)
    if policy is not None:
        info = CallInfo(task.task_key, task.fn, params, flow.flow_run_id, flow.parameters)
        cache_key = policy.compute_key(info) or ""
    persist = opts.persist_result if opts.persist_result is not None else bool(cache_key)

    create = pb.CreateTaskRunRequest(
        id=run_id,
        flow_run_id=flow.flow_run_id,
        name=f"{name}-{occurrence}",
        task_key=task.task_key,
        dynamic_key=dynamic_key,
        cache_key=cache_key,
        tags=sorted(tags),
        state=new_state(PENDING),
        policy=pb.RunPolicy(retries=opts.retries, retry_delay_seconds=opts.retry_delays()),
    )
    stopped = flow.scope.reason if flow.scope is not None else None
    if stopped is Cancel:
        raise RunCancelled(f"flow run {flow.flow_run_id} was cancelled: task {name!r} was not started")
    if stopped is not None:
        raise TaskRunFailed(f"flow run {flow.flow_run_id} is stopping: task {name!r} was not started")
    if flow.completed is not None and run_id in flow.completed:
        # The same call completed in an earlier attempt of this flow run: its result, not a second run.
        earlier = flow.completed[run_id]
        return earlier if return_state else earlier.result()
    # In a retried flow run the task run may already exist: ask before running it again.
    ask_first = bool(cache_key) or flow.run_count > 1
    run_count = 0
    first = True
    while True:
        run_count += 1
        running = new_state(RUNNING, cache_key=cache_key or None, refresh_cache=bool(opts.refresh_cache) or None)
        proposal = pb.TaskRunStateProposal(
            task_run_id=run_id, proposal=pb.StateProposal(state=running), wait_for_decision=ask_first
        )
        waiter = runtime.sync.submit(creates=(create,) if first else (), proposals=(proposal,))
        first = False
        if waiter is not None:
            answer: pb.ProposalResult = yield Wait(waiter)
            if answer.decision == pb.WAIT:
                # Another run is computing this cache key: ask again shortly, then take its result.
                run_count -= 1
                yield Sleep(max(answer.delay_seconds, 0.01))
                continue
            if answer.decision == pb.REJECT and answer.state.type == COMPLETED:
                # A cache hit, or the run completed in an earlier attempt of the flow run.
                from weir.results import load_result

                ref = answer.state.details.result_ref
                if not ref and answer.state.name != CACHED:
                    # The server lets a retried flow run such a call again; this one completed in this attempt.
                    raise TaskRunFailed(
                        f"task run {name} already completed but its result was not persisted "
                        "(set persist_result=True to keep it)"
                    )
                value = load_result(ref) if ref else None
                return to_user_state(answer.state, value) if return_state else value
            if answer.decision != pb.ACCEPT:
                raise TaskRunFailed(f"task run {name} was not allowed to run: {answer.reason}")

        log_prints = flow.log_prints if opts.log_prints is None else opts.log_prints
        ctx = TaskRunContext(run_id, name, flow.flow_run_id, dict(params), tags, run_count, log_prints)
        token = task_run_ctx.set(ctx)
        _hooks(opts.on_running, task, ctx, running)
        try:
            args, kwargs = call_args
            value = yield Call(body or task.fn, args, kwargs, opts.timeout_seconds, flow.scope)
        except RunCancelled as exc:
            task_run_ctx.reset(token)
            cancelled = new_state(CANCELLED, message=describe(exc))
            _end(runtime, run_id, cancelled)
            _hooks(opts.on_cancellation, task, ctx, cancelled)
            if return_state:
                return to_user_state(cancelled, exception=exc)
            raise
        except Exception as exc:
            task_run_ctx.reset(token)
            name_ = "TimedOut" if isinstance(exc, TimeoutError) else "Failed"
            failed = new_state(FAILED, name=name_, message=describe(exc))
            retry = run_count <= opts.retries and _should_retry(task, ctx, failed, exc)
            delay = opts.jittered(_delay_for(opts.retry_delays(), run_count)) if retry else 0.0
            # The server turns an allowed failure into AwaitingRetry; ask only when it has a delay.
            wait = retry and delay > 0
            failure = pb.TaskRunStateProposal(
                task_run_id=run_id, proposal=pb.StateProposal(state=failed, force=not retry), wait_for_decision=wait
            )
            waiter = runtime.sync.submit(proposals=(failure,))
            if retry:
                if waiter is None:
                    continue
                answer = yield Wait(waiter)
                if answer.decision == pb.REJECT and answer.state.type == common_pb2.SCHEDULED:
                    yield Sleep(delay)
                    continue
            _hooks(opts.on_failure, task, ctx, failed)
            if return_state:
                return to_user_state(failed, exception=exc)
            raise
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit, a crash of its flow run: the task run crashed.
            task_run_ctx.reset(token)
            if isinstance(exc, GeneratorExit):
                raise
            crashed = new_state(CRASHED, message=f"execution was interrupted: {describe(exc)}")
            _end(runtime, run_id, crashed)
            _hooks(opts.on_crashed, task, ctx, crashed)
            raise
        task_run_ctx.reset(token)
        done_details: dict[str, Any] = {}
        if persist:
            try:
                done_details["result_ref"] = _persist(runtime, task, run_id, value)
            except InvalidArgument as exc:
                failed = new_state(FAILED, message=str(exc))
                proposal = pb.StateProposal(state=failed, force=True)
                runtime.sync.submit(proposals=(pb.TaskRunStateProposal(task_run_id=run_id, proposal=proposal),))
                _hooks(opts.on_failure, task, ctx, failed)
                if return_state:
                    return to_user_state(failed, exception=exc)
                raise
        if cache_key:
            done_details["cache_key"] = cache_key
            if opts.cache_expiration is not None:
                done_details["cache_expiration"] = datetime.now(UTC) + _as_timedelta(opts.cache_expiration)
        completed = new_state(COMPLETED, **done_details)
        done = pb.TaskRunStateProposal(task_run_id=run_id, proposal=pb.StateProposal(state=completed))
        runtime.sync.submit(proposals=(done,))
        _hooks(opts.on_completion, task, ctx, completed)
        if flow.completed is not None:
            flow.completed[run_id] = to_user_state(completed, value)
        return to_user_state(completed, value) if return_state else value


def _end(runtime: Runtime, run_id: str, state: common_pb2.State) -> None:
    """A final state no rule may turn into a retry (cancelled, crashed)."""
    proposal = pb.StateProposal(state=state, force=True)
    runtime.sync.submit(proposals=(pb.TaskRunStateProposal(task_run_id=run_id, proposal=proposal),))


def _should_retry(task: Task[Any, Any], ctx: TaskRunContext, failed: common_pb2.State, exc: BaseException) -> bool:
    """``retry_condition_fn(task, task_run_context, state)``; ``state.result(raise_on_failure=False)`` is the error."""
    condition = task.options.retry_condition_fn
    if condition is None:
        return True
    try:
        return bool(condition(task, ctx, to_user_state(failed, exception=exc)))
    except Exception:
        import logging

        logging.getLogger("weir.engine").exception("retry_condition_fn of task %r failed: not retrying", task.name)
        return False


def _as_timedelta(value: Any) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def _delay_for(delays: tuple[float, ...], run_count: int) -> float:
    if not delays:
        return 0.0
    return delays[min(run_count - 1, len(delays) - 1)]


def _persist(runtime: Runtime, task: Task[Any, Any], run_id: str, value: Any) -> str:
    opts = task.options
    serializer = serializer_for(opts.result_serializer)
    try:
        data = serializer.dumps(value)
    except Exception as exc:
        raise InvalidArgument(
            f"task {opts.name or task.fn.__name__!r} returned a value the {serializer.name} serializer cannot "
            f"store ({describe(exc)}); return something serialisable or set persist_result=False"
        ) from exc
    storage = opts.result_storage or LocalFileSystem(runtime.settings.home / "results")
    return str(storage.write(run_id, encode(serializer, data)))


def _hooks(hooks: tuple[Any, ...], task: Any, ctx: TaskRunContext, state: common_pb2.State) -> None:
    for hook in hooks:
        try:
            hook(task, ctx, to_user_state(state))
        except Exception:  # a hook must not change the run's outcome
            import logging

            logging.getLogger("weir.engine").exception("hook %r failed", hook)
