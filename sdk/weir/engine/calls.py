"""Entry points from ``Task`` into the engine: call, submit, map."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from weir.context import FlowRunContext, flow_run_ctx
from weir.engine.futures import FutureList, WeirFuture, unmapped, wait
from weir.engine.runtime import get_runtime
from weir.engine.steps import drive_async, drive_sync
from weir.engine.task_engine import plan_identity, task_run
from weir.errors import InvalidArgument, WeirError

if TYPE_CHECKING:
    from weir.tasks import Task


def _resolve(value: Any) -> Any:
    """Futures passed as arguments become their results (the call waits for them)."""
    if isinstance(value, WeirFuture):
        return value.result()
    if isinstance(value, unmapped):
        return value.value
    if isinstance(value, list | tuple) and any(isinstance(v, WeirFuture) for v in value):
        return type(value)(_resolve(v) for v in value)
    return value


def _prepare(
    task: Task[Any, Any],
    flow: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: Iterable[Any] | None,
) -> tuple[dict[str, Any], tuple[Any, ...], dict[str, Any], tuple[str, str, int]]:
    if wait_for:
        wait([f for f in wait_for if isinstance(f, WeirFuture)])
    try:
        params = task.bind(args, kwargs)
    except TypeError as exc:
        raise InvalidArgument(f"task {task.name!r}: {exc}") from None
    planned = plan_identity(task.task_key, flow, params)
    return params, args, kwargs, planned


def call_task(
    task: Task[Any, Any],
    flow: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    return_state: bool,
    wait_for: Iterable[Any] | None,
) -> Any:
    args = tuple(_resolve(a) for a in args)
    kwargs = {k: _resolve(v) for k, v in kwargs.items()}
    params, args, kwargs, planned = _prepare(task, flow, args, kwargs, wait_for)
    steps = task_run(task, get_runtime(), flow, params, (args, kwargs), return_state, planned)
    if task.is_async:
        return drive_async(steps)
    return drive_sync(steps)


def _current_flow(task: Task[Any, Any]) -> FlowRunContext:
    flow = flow_run_ctx.get()
    if flow is None:
        raise WeirError(f"{task.name}.submit() and .map() need a running flow: call them inside a @flow")
    return flow


def _run_submitted(
    task: Task[Any, Any],
    flow: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    planned: tuple[str, str, int],
    body: Any,
    wait_for: list[WeirFuture[Any]],
    drive: Any = None,
) -> Any:
    """A submitted call, on a runner thread: wait for its upstreams, then run it like a direct call.

    ``drive=drive_async`` (on the flow's loop, upstreams already awaited): returns the coroutine.
    """
    try:
        for upstream in wait_for:
            upstream.wait()
            failed = upstream.failed_state()
            if failed is not None:
                upstream.observed = True  # its failure is reported through this run
                raise UpstreamFailed(f"upstream task run {upstream.task_run_id} ended {failed.display_name}")
        args = tuple(_resolve(a) for a in args)
        kwargs = {k: _resolve(v) for k, v in kwargs.items()}
    except Exception as exc:
        # The call cannot start: record it as a failed run of its own, with the reason, not a retry.
        error = exc if isinstance(exc, UpstreamFailed) else UpstreamFailed(f"an input failed: {exc}")

        def refuse(*_: Any, **__: Any) -> Any:
            raise error

        task, body = task.with_options(retries=0), refuse
    params = task.bind(args, kwargs)
    steps = task_run(task, get_runtime(), flow, params, (args, kwargs), True, planned, body)
    if drive is not None:
        return drive(steps)
    if task.is_async and body is None:
        return asyncio.run(drive_async(steps))  # submitted from sync code: a loop of its own on the runner thread
    return drive_sync(steps)


class UpstreamFailed(WeirError):
    """A submitted call did not run because a future it depends on failed."""


def submit_task(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> WeirFuture[Any]:
    flow = _current_flow(task)
    wait_for = [f for f in (kwargs.pop("wait_for", None) or ()) if isinstance(f, WeirFuture)]
    # Identity is taken here, in submission order, not when a pool thread gets to it.
    try:
        params = task.bind(args, kwargs)
    except TypeError as exc:
        raise InvalidArgument(f"task {task.name!r}: {exc}") from None
    planned = plan_identity(task.task_key, flow, params)
    runner = flow.task_runner
    in_processes = getattr(runner, "runs_in_processes", False)
    loop = _running_loop() if task.is_async and not in_processes else None
    if loop is not None:
        # An async task submitted from a coroutine (an async flow) runs on that loop, beside the flow.
        future = _submit_on_loop(loop, task, flow, args, kwargs, planned, wait_for)
        flow.futures.append(future)
        return future
    body = None
    if in_processes:
        body = functools.partial(runner.run_in_process, task.fn)
    # Upstreams were submitted earlier, so on a FIFO pool they start first: waiting cannot deadlock.
    inner = runner.submit(_run_submitted, task, flow, args, kwargs, planned, body, wait_for)
    future = WeirFuture(planned[0], inner)
    flow.futures.append(future)
    return future


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _submit_on_loop(
    loop: asyncio.AbstractEventLoop,
    task: Task[Any, Any],
    flow: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    planned: tuple[str, str, int],
    wait_for: list[WeirFuture[Any]],
) -> WeirFuture[Any]:
    """An asyncio task on the caller's loop, seen through a concurrent future like any submission."""
    inner: concurrent.futures.Future[Any] = concurrent.futures.Future()
    inner.set_running_or_notify_cancel()
    running = loop.create_task(_run_submitted_async(task, flow, args, kwargs, planned, wait_for))

    def settle(done: asyncio.Task[Any]) -> None:
        if done.cancelled():
            inner.set_exception(concurrent.futures.CancelledError(f"task run {planned[0]} was cancelled"))
        elif (error := done.exception()) is not None:
            inner.set_exception(error)
        else:
            inner.set_result(done.result())

    running.add_done_callback(settle)
    return WeirFuture(planned[0], inner, loop=loop, task=running)


async def _run_submitted_async(
    task: Task[Any, Any],
    flow: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    planned: tuple[str, str, int],
    wait_for: list[WeirFuture[Any]],
) -> Any:
    """A submitted async call on the flow's loop: await its upstreams, then run it like a direct call."""
    upstreams = [*wait_for, *_futures_in(args, kwargs)]
    for upstream in upstreams:
        await upstream.wait_async()
    return await _run_submitted(task, flow, args, kwargs, planned, None, wait_for, drive=drive_async)


def _futures_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[WeirFuture[Any]]:
    found: list[WeirFuture[Any]] = []
    for value in (*args, *kwargs.values()):
        items = value if isinstance(value, list | tuple) else (value,)
        found.extend(v for v in items if isinstance(v, WeirFuture))
    return found


def map_task(task: Task[Any, Any], iterables: tuple[Any, ...], kwargs: dict[str, Any]) -> FutureList[Any]:
    fixed = {k: v for k, v in kwargs.items() if isinstance(v, unmapped)}
    mapped_kwargs = {k: v for k, v in kwargs.items() if not isinstance(v, unmapped) and k != "wait_for"}
    columns = [list(it) if not isinstance(it, unmapped) else None for it in iterables]
    kw_columns = {k: list(v) for k, v in mapped_kwargs.items()}
    lengths = {len(c) for c in columns if c is not None} | {len(c) for c in kw_columns.values()}
    if len(lengths) > 1:
        raise InvalidArgument(f"{task.name}.map(): mapped arguments have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    futures: FutureList[Any] = FutureList()
    for i in range(n):
        args = tuple(c[i] if c is not None else it.value for c, it in zip(columns, iterables, strict=True))
        kw = {k: col[i] for k, col in kw_columns.items()} | {k: v.value for k, v in fixed.items()}
        if "wait_for" in kwargs:
            kw["wait_for"] = kwargs["wait_for"]
        futures.append(submit_task(task, args, kw))
    return futures
