"""One flow run, from call to final state (driven by steps.py).

Flow-run transitions are unary calls: they gate execution. Task-run records
travel over SyncRuns; before the flow run proposes its final state it waits
for every submitted task and for the stream's ack, so when the call returns
every task run is already durable and visible through the API.

Retries: a failed attempt is proposed FAILED; the server's ``enforce_retries``
rule answers with AwaitingRetry (SCHEDULED at the retry time), and the next
RUNNING proposal waits until then (``wait_for_scheduled_time``). A retried
attempt reuses the results of calls that completed in an earlier one: the
same call has the same identity, so it finds its own result, never another's.

Adopt mode (``python -m weir.engine.execute``, started by a worker): the run
already exists, created from a deployment and made PENDING by the server with
a fencing token. The engine creates nothing; it runs that run, and every
proposal carries the token, so a worker that lost the assignment cannot write.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weir.client.types import Decision, FlowRun, RunPolicy, State, StateDetails, StateType
from weir.context import FlowRunContext, flow_run_ctx, tags_ctx
from weir.engine import identity
from weir.engine.futures import all_done
from weir.engine.interrupts import Cancel, RunCancelled, Scope, Terminate, TerminationSignal, sigterm_as_crash
from weir.engine.runtime import Runtime
from weir.engine.states import CANCELLED, CRASHED, describe
from weir.engine.steps import Call, Sleep, Steps, Wait
from weir.errors import Conflict, DeadlineExceeded, Unavailable, WeirError
from weir.results import LocalFileSystem, encode, serializer_for

if TYPE_CHECKING:
    from weir.flows import Flow

log = logging.getLogger("weir.engine")


class FlowRunAborted(WeirError):
    """The server would not let the flow run go on (cancelled, or a rule said ABORT)."""


@dataclass(frozen=True, slots=True)
class AdoptedRun:
    """An existing flow run to execute instead of creating one (a worker's assignment)."""

    flow_run: FlowRun
    #: The assignment's token; proposals carrying a stale one are rejected.
    fencing_token: str | None = None


def flow_run(
    flow: Flow[Any, Any],
    runtime: Runtime,
    params: Mapping[str, Any],
    return_state: bool,
    parent: FlowRunContext | None,
    adopt: AdoptedRun | None = None,
) -> Steps:
    opts = flow.options
    client = runtime.client
    tags = opts.tags | tags_ctx.get() | (parent.tags if parent else frozenset())
    parent_task_run_id = None
    fencing_token = adopt.fencing_token if adopt is not None else None
    if parent is not None:
        # A subflow is a child flow run linked to a task run of its parent, keyed like any task call.
        parent_task_run_id, reused = yield from _parent_task_run(flow, runtime, parent, params)
        if reused is not None:
            return reused if return_state else reused.result()
    if adopt is not None:
        created = adopt.flow_run
        tags |= frozenset(created.tags)
    else:
        parameters = {
            k: identity.to_jsonable(v, name=f"parameter {k!r} of flow {flow.name!r}") for k, v in params.items()
        }
        new_id = str(uuid.uuid4())  # a resend after a lost answer finds the same run
        created = yield from _unary(
            runtime,
            lambda: client.create_flow_run(
                id=new_id,
                flow_name=flow.name,
                parameters=parameters,
                tags=tuple(sorted(tags)),
                parent_task_run_id=parent_task_run_id,
                policy=RunPolicy(retries=opts.retries, retry_delay_seconds=opts.retry_delays()),
            ),
        )
    run_id = created.id
    # An adopted run retries by its own policy (the deployment's), which the server enforces.
    retries = created.policy.retries if adopt is not None else opts.retries
    template = opts.task_runner or _default_runner()
    #: Results of calls completed in earlier attempts, by run id (kept only when there can be a retry).
    completed: dict[str, State] = {}
    run_count = created.run_count
    scope: Scope | None = None
    ctx: FlowRunContext | None = None
    runner: Any = None
    try:
        with sigterm_as_crash() if parent is None else contextlib.nullcontext():
            while True:
                answer = yield from _propose(runtime, run_id, State(type=StateType.RUNNING), fencing_token)
                if answer.decision is Decision.WAIT:
                    yield Sleep(max(answer.delay_seconds, 0.01))
                    continue
                if answer.decision is not Decision.ACCEPT:
                    error = FlowRunAborted(f"flow run {run_id} may not run: {answer.reason}")
                    if parent_task_run_id is not None:
                        _finish_parent_task_run(runtime, parent_task_run_id, error)
                    raise error
                # Entering RUNNING counts a run (the server's bookkeeping); no read-back needed.
                run_count += 1
                runner = template.duplicate()
                # Everything this attempt runs stops together on a cancel, a crash or the flow's timeout.
                scope = Scope(parent.scope if parent is not None else None, opts.timeout_seconds)
                ctx = FlowRunContext(
                    flow_run_id=run_id,
                    flow_name=flow.name,
                    name=created.name,
                    parameters=dict(params),
                    tags=tags,
                    run_count=run_count,
                    scheduled_start=created.expected_start_time,
                    options=opts,
                    task_runner=runner,
                    parent_task_run_id=parent_task_run_id,
                    log_prints=bool(opts.log_prints),
                    completed=completed if retries else None,
                    scope=scope,
                )
                outcome = yield from _attempt(flow, runtime, ctx, answer, fencing_token, return_state, parent)
                if outcome is not _RETRY:
                    return outcome
                scope.close()
    except BaseException as exc:
        if ctx is None or isinstance(exc, Exception | GeneratorExit):
            raise  # GeneratorExit: the generator was closed (abandoned by its driver), not a crash
        # KeyboardInterrupt, SystemExit, SIGTERM, a cancelled asyncio task: the run crashed in this process.
        yield from _crash(flow, runtime, ctx, runner, exc, fencing_token)
        raise
    finally:
        if scope is not None:
            scope.close()


_RETRY = object()


def _attempt(
    flow: Flow[Any, Any],
    runtime: Runtime,
    ctx: FlowRunContext,
    answer: Any,
    fencing_token: str | None,
    return_state: bool,
    parent: FlowRunContext | None,
) -> Steps:
    """One RUNNING attempt, to its final state: the value (or State), or ``_RETRY``."""
    opts = flow.options
    run_id, runner, scope = ctx.flow_run_id, ctx.task_runner, ctx.scope
    parent_task_run_id = ctx.parent_task_run_id
    token = flow_run_ctx.set(ctx)
    runtime.start_heartbeat(run_id, on_cancel=lambda: scope.stop(Cancel))
    runner.start()
    _hooks(opts.on_running, flow, ctx, answer.state or State(type=StateType.RUNNING))
    error: BaseException | None = None
    value: Any = None
    try:
        value = yield Call(flow.fn, (), dict(ctx.parameters), opts.timeout_seconds, scope)
    except Exception as exc:
        error = exc
    finally:
        flow_run_ctx.reset(token)
    # Every submitted task finishes and every record is committed before the final state.
    if ctx.futures:
        yield Wait(all_done(ctx.futures))  # a step: an async flow's loop keeps running its tasks meanwhile
    runner.shutdown()
    yield Wait(runtime.sync.flush())
    runtime.stop_heartbeat(run_id)
    if scope.reason is Cancel:
        return (yield from _cancelled(flow, runtime, ctx, fencing_token, return_state))
    if error is None:
        unhandled = [e for f in ctx.futures if (e := f.failed_unobserved()) is not None]
        if unhandled:
            error = unhandled[0]
    final: State | None = None
    if error is None:
        details = StateDetails()
        if opts.persist_result:
            try:
                details = StateDetails(result_ref=_persist(runtime, flow, run_id, value))
            except Exception as exc:
                error = _unserialisable(f"flow {flow.name!r}", exc)
        if error is None:
            final = State(type=StateType.COMPLETED, details=details)
    if final is None:
        assert error is not None
        name = "TimedOut" if isinstance(error, TimeoutError) else None
        final = State(type=StateType.FAILED, name=name, message=describe(error))
    answer = yield from _propose(runtime, run_id, final, fencing_token)
    state = answer.state or final
    if error is not None and answer.decision is Decision.REJECT and state.type is StateType.SCHEDULED:
        return _RETRY  # AwaitingRetry: the next RUNNING proposal waits for the retry time
    if parent_task_run_id is not None:
        _finish_parent_task_run(runtime, parent_task_run_id, error)
    if error is not None:
        _hooks(opts.on_failure, flow, ctx, state)
        if return_state:
            return state.with_result(exception=error)
        raise error
    if answer.decision is not Decision.ACCEPT:
        if state.type is StateType.CANCELLED or state.type is StateType.CANCELLING:
            _hooks(opts.on_cancellation, flow, ctx, state)
        raise Conflict(f"flow run {run_id} could not complete: {answer.reason}")
    _hooks(opts.on_completion, flow, ctx, state)
    if parent is not None and parent.completed is not None and parent_task_run_id is not None:
        parent.completed[parent_task_run_id] = State(type=StateType.COMPLETED).with_result(value)
    return state.with_result(value) if return_state else value


def _cancelled(
    flow: Flow[Any, Any], runtime: Runtime, ctx: FlowRunContext, fencing_token: str | None, return_state: bool
) -> Steps:
    """The run was cancelled while it ran (its body and tasks were stopped): it ends CANCELLED."""
    error = RunCancelled(f"flow run {ctx.flow_run_id} was cancelled")
    final = State(type=StateType.CANCELLED, message="cancelled while running")
    answer = yield from _propose(runtime, ctx.flow_run_id, final, fencing_token)
    state = answer.state or final
    if ctx.parent_task_run_id is not None:
        _finish_parent_task_run(runtime, ctx.parent_task_run_id, error, CANCELLED)
    if state.type is StateType.CANCELLED:
        _hooks(flow.options.on_cancellation, flow, ctx, state)
    if return_state:
        return state.with_result(exception=error)
    raise error


def _crash(
    flow: Flow[Any, Any],
    runtime: Runtime,
    ctx: FlowRunContext,
    runner: Any,
    exc: BaseException,
    fencing_token: str | None,
) -> Steps:
    """A BaseException left the run: record CRASHED (CANCELLED when a cancel was asked for) and run the hooks.

    SIGTERM is how a worker stops a cancelled run's process, so a SIGTERM while the
    run is CANCELLING ends it CANCELLED, with the on_cancellation hooks.
    """
    run_id = ctx.flow_run_id
    ctx.scope.stop(Terminate)  # its running tasks stop too (and end Crashed)
    if runner is not None:
        runner.shutdown(wait=False)
    runtime.stop_heartbeat(run_id)
    cancelling = ctx.scope.reason is Cancel or runtime.is_cancel_requested(run_id)
    if not cancelling and isinstance(exc, TerminationSignal):
        try:
            current = yield Wait(runtime.submit(runtime.client.read_flow_run(run_id)))
            cancelling = current.state is not None and current.state.type is StateType.CANCELLING
        except WeirError:
            pass
    if isinstance(exc, TerminationSignal):
        message = f"the process received signal {exc.signum} (SIGTERM) while the flow ran"
    else:
        message = f"execution was interrupted: {describe(exc)}"
    kind = StateType.CANCELLED if cancelling else StateType.CRASHED
    try:
        yield Wait(runtime.sync.flush())
    except WeirError as err:
        log.warning("task-run records of crashed flow run %s not confirmed: %s", run_id, err)
    answer = yield from _propose(runtime, run_id, State(type=kind, message=message), fencing_token)
    if ctx.parent_task_run_id is not None:
        _finish_parent_task_run(runtime, ctx.parent_task_run_id, exc, CANCELLED if cancelling else CRASHED)
    state = answer.state
    if answer.decision is Decision.ACCEPT and state is not None:
        hooks = flow.options.on_cancellation if cancelling else flow.options.on_crashed
        _hooks(hooks, flow, ctx, state)


#: How long flow-run calls keep retrying while the server is unreachable.
UNAVAILABLE_RETRY_SECONDS = 120.0
_BACKOFF_FIRST, _BACKOFF_CAP = 0.05, 2.0


def _unary(runtime: Runtime, make: Callable[[], Coroutine[Any, Any, Any]]) -> Steps:
    """One unary call, retried with backoff while the server is unreachable (the call must be idempotent)."""
    deadline = time.monotonic() + UNAVAILABLE_RETRY_SECONDS
    backoff = _BACKOFF_FIRST
    while True:
        try:
            return (yield Wait(runtime.submit(make())))
        except (Unavailable, DeadlineExceeded) as exc:
            if time.monotonic() + backoff > deadline:
                raise
            log.warning("orchestration unreachable (%s); retrying in %.2fs", exc, backoff)
            yield Sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_CAP)


def _propose(runtime: Runtime, run_id: str, state: State, fencing_token: str | None = None) -> Steps:
    """Propose a flow-run state; a resend after a lost answer gets the first answer back (idempotency key)."""
    key = str(uuid.uuid4())
    client = runtime.client
    if fencing_token and state.type is StateType.RUNNING:
        # The server checks a proposal's token against the current state's: RUNNING keeps holding it,
        # so a stale assignment cannot write over this run while it runs.
        state = state.model_copy(update={"details": state.details.model_copy(update={"fencing_token": fencing_token})})
    return (
        yield from _unary(
            runtime,
            lambda: client.set_flow_run_state(run_id, state, idempotency_key=key, fencing_token=fencing_token),
        )
    )


def _default_runner() -> Any:
    from weir.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner()


def _unserialisable(what: str, exc: BaseException) -> WeirError:
    from weir.errors import InvalidArgument

    return InvalidArgument(
        f"{what} returned a value that cannot be persisted ({describe(exc)}); "
        "return something serialisable or set persist_result=False"
    )


def _persist(runtime: Runtime, flow: Flow[Any, Any], run_id: str, value: Any) -> str:
    serializer = serializer_for(flow.options.result_serializer)
    storage = flow.options.result_storage or LocalFileSystem(runtime.settings.home / "results")
    return str(storage.write(run_id, encode(serializer, serializer.dumps(value))))


def _hooks(hooks: tuple[Any, ...], flow: Flow[Any, Any], ctx: FlowRunContext, state: State) -> None:
    """Run the user's hooks: ``hook(flow, flow_run_context, state)``. A hook never changes the outcome."""
    for hook in hooks:
        try:
            hook(flow, ctx, state)
        except Exception:
            log.exception("hook %r of flow %r failed", hook, flow.name)


def _parent_task_run(
    flow: Flow[Any, Any], runtime: Runtime, parent: FlowRunContext, params: Mapping[str, Any]
) -> Steps:
    """Create (or find again, on a parent retry) the task run of the parent that stands for this subflow call."""
    from weir.engine.states import PENDING, RUNNING, new_state
    from weir.engine.task_engine import plan_identity
    from weir.v1 import orchestration_pb2 as pb

    run_id, dynamic_key, occurrence = plan_identity(flow.flow_key, parent, params)
    if parent.completed is not None and run_id in parent.completed:
        return run_id, parent.completed[run_id]
    create = pb.CreateTaskRunRequest(
        id=run_id,
        flow_run_id=parent.flow_run_id,
        name=f"{flow.name}-{occurrence}",
        task_key=flow.flow_key,
        dynamic_key=dynamic_key,
        state=new_state(PENDING),
    )
    running = pb.TaskRunStateProposal(task_run_id=run_id, proposal=pb.StateProposal(state=new_state(RUNNING)))
    runtime.sync.submit(creates=(create,), proposals=(running,))
    # The child's record must exist before the child flow run points at it.
    yield Wait(runtime.sync.flush())
    return run_id, None


def _finish_parent_task_run(
    runtime: Runtime, task_run_id: str, error: BaseException | None, end: int | None = None
) -> None:
    from weir.engine.states import COMPLETED, FAILED, new_state
    from weir.v1 import orchestration_pb2 as pb

    if error is None:
        state = new_state(COMPLETED)
    else:
        state = new_state(end if end is not None else FAILED, message=describe(error))
    proposal = pb.StateProposal(state=state, force=error is not None)
    runtime.sync.submit(proposals=(pb.TaskRunStateProposal(task_run_id=task_run_id, proposal=proposal),))
