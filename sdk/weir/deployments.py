"""Deploying flows and running deployments.

::

    from weir.deployments import deploy, run_deployment

    deploy(etl, name="nightly", work_pool_name="local", cron="0 3 * * *")
    flow_run = run_deployment("etl/nightly", parameters={"day": "mon"}, timeout=600)

``deploy`` records where a flow's code is (its entrypoint), the JSON schema
of its parameters, its retry policy and its schedules; a worker polling the
work pool runs what comes due. ``run_deployment`` creates a run now (or at
``scheduled_time``) and, unless ``timeout=0``, waits for it to finish.

Both block and work inside a flow too: they drive the async core on the
SDK's runtime loop. The pieces are public for code with its own client (the
CLI): ``build_deployment`` makes the draft, ``apply_deployment`` stores it,
``read_deployment`` resolves a name or id, ``wait_for_flow_run`` waits.
``arun_deployment`` is the awaitable twin of ``run_deployment``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import typing
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from weir.client.types import CollisionStrategy, Deployment, EventFilter, FlowRun, Schedule, State, StateType
from weir.errors import InvalidArgument, NotFound, WeirError

if TYPE_CHECKING:
    from weir.client import AsyncWeirClient
    from weir.flows import Flow

log = logging.getLogger("weir.deployments")

__all__ = [
    "apply_deployment",
    "arun_deployment",
    "build_deployment",
    "deploy",
    "parameter_schema",
    "read_deployment",
    "run_deployment",
    "wait_for_flow_run",
]


# ------------------------------------------------------------------ deploy


def deploy(
    flow: Flow[Any, Any],
    *,
    name: str,
    work_pool_name: str,
    work_queue_name: str | None = None,
    job_variables: Mapping[str, Any] | None = None,
    cron: str | None = None,
    interval: float | timedelta | None = None,
    rrule: str | None = None,
    timezone: str = "UTC",
    schedules: Iterable[Schedule] = (),
    parameters: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
    description: str | None = None,
    version: str | None = None,
    concurrency_limit: int = 0,
    collision_strategy: CollisionStrategy | str = CollisionStrategy.ENQUEUE,
    paused: bool = False,
    entrypoint: str | None = None,
    working_directory: str | None = None,
) -> Deployment:
    """Create or replace the deployment ``<flow name>/<name>`` of ``flow``.

    ``entrypoint`` defaults to the flow's source file relative to
    ``working_directory`` (default: the current directory) and its function
    name. ``cron``, ``interval`` (seconds or a timedelta) and ``rrule`` each
    add a schedule read in ``timezone``; ``schedules`` adds more.
    ``parameters`` are the defaults of every run (the flow function's own
    defaults are in the parameter schema). Retries come from the flow's
    options. The work pool must exist (``InvalidArgument`` otherwise).
    """
    spec = dict(locals())  # first statement: exactly the arguments
    del spec["flow"]
    draft = build_deployment(flow, **spec)
    from weir.engine.runtime import get_runtime

    runtime = get_runtime()
    return runtime.call(apply_deployment(runtime.client, draft))


def build_deployment(
    flow: Flow[Any, Any],
    *,
    name: str,
    work_pool_name: str,
    work_queue_name: str | None = None,
    job_variables: Mapping[str, Any] | None = None,
    cron: str | None = None,
    interval: float | timedelta | None = None,
    rrule: str | None = None,
    timezone: str = "UTC",
    schedules: Iterable[Schedule] = (),
    parameters: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
    description: str | None = None,
    version: str | None = None,
    concurrency_limit: int = 0,
    collision_strategy: CollisionStrategy | str = CollisionStrategy.ENQUEUE,
    paused: bool = False,
    entrypoint: str | None = None,
    working_directory: str | None = None,
) -> Deployment:
    """The draft :func:`deploy` stores (``id`` is ``None``); nothing is sent.

    Takes the arguments of :func:`deploy`; store the draft with
    :func:`apply_deployment`, or dry-run its job variables with
    ``client.validate_job_variables(deployment=draft)``.
    """
    from weir._entrypoints import entrypoint_for

    workdir = os.path.abspath(working_directory or os.getcwd())
    try:
        strategy = CollisionStrategy(str(collision_strategy).upper())
    except ValueError:
        choices = ", ".join(CollisionStrategy)
        raise InvalidArgument(
            f"collision_strategy {collision_strategy!r} is not one of {choices}", field="collision_strategy"
        ) from None
    opts = flow.options
    return Deployment(
        flow_name=flow.name,
        name=name,
        entrypoint=entrypoint or entrypoint_for(flow, workdir),
        working_directory=workdir,
        parameters=_check_parameters(flow, parameters),
        parameter_schema=parameter_schema(flow),
        job_variables=dict(job_variables or {}),
        work_pool_name=work_pool_name,
        work_queue_name=work_queue_name,
        schedules=(*_schedules(cron, interval, rrule, timezone), *schedules),
        tags=tuple(tags),
        version=version if version is not None else opts.version,
        description=description if description is not None else opts.description,
        paused=paused,
        concurrency_limit=concurrency_limit,
        collision_strategy=strategy,
        retries=opts.retries,
        retry_delay_seconds=opts.retry_delays() if opts.retries else (),
    )


async def apply_deployment(client: AsyncWeirClient, draft: Deployment) -> Deployment:
    """Store a draft (create or replace ``flow/name``); its work pool must exist."""
    pool = draft.work_pool_name
    if pool:
        try:
            await client.read_work_pool(pool)
        except NotFound:
            raise InvalidArgument(
                f"work pool {pool!r} does not exist (create it: weir work-pool create {pool})",
                field="work_pool_name",
            ) from None
    values = {k: getattr(draft, k) for k in Deployment.model_fields if k not in _SERVER_FIELDS}
    return await client.upsert_deployment(**values)


_SERVER_FIELDS = frozenset({"id", "created", "updated"})


def _schedules(
    cron: str | None, interval: float | timedelta | None, rrule: str | None, timezone: str
) -> list[Schedule]:
    out: list[Schedule] = []
    if cron is not None:
        out.append(Schedule.from_cron(cron, timezone=timezone))
    if interval is not None:
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
        if seconds <= 0:
            raise InvalidArgument(f"interval must be positive, got {interval}", field="interval")
        out.append(Schedule.every(interval, timezone=timezone))
    if rrule is not None:
        out.append(Schedule.from_rrule(rrule, timezone=timezone))
    return out


def _check_parameters(flow: Flow[Any, Any], parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deployment defaults as JSON values; names the flow does not take are refused."""
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    values = dict(parameters or {})
    signature = inspect.signature(flow.fn)
    if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        for key in values:
            if key not in signature.parameters:
                raise InvalidArgument(f"flow {flow.name!r} has no parameter {key!r}", field=f"parameters.{key}")
    try:
        jsonable: dict[str, Any] = to_jsonable_python(values)
    except PydanticSerializationError as exc:
        raise InvalidArgument(f"parameters must be JSON values: {exc}", field="parameters") from None
    return jsonable


def parameter_schema(flow: Flow[Any, Any]) -> dict[str, Any]:
    """The JSON schema of a flow's parameters, built by pydantic from its signature.

    Parameters without a default are ``required``; JSON-able defaults appear
    as ``default``. A type pydantic cannot describe is left open (any value);
    ``*args`` is left out (deployment runs pass parameters by name).
    """
    from pydantic import TypeAdapter

    sig = inspect.signature(flow.fn)
    try:
        hints = typing.get_type_hints(flow.fn)
    except Exception:  # unresolvable annotations: describe the names only
        hints = {}
    params: list[inspect.Parameter] = []
    annotations: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            continue
        hint = hints.get(p.name, Any)
        try:
            TypeAdapter(hint).json_schema()
        except Exception:
            hint = Any
        annotations[p.name] = hint
        kind = p.VAR_KEYWORD if p.kind is p.VAR_KEYWORD else p.KEYWORD_ONLY
        params.append(p.replace(annotation=hint, kind=kind))

    def by_name(**kwargs: Any) -> None: ...

    by_name.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=inspect.Signature.empty
    )
    by_name.__annotations__ = annotations
    with warnings.catch_warnings():
        # "default is not JSON serializable": it is left out, as intended.
        warnings.simplefilter("ignore")
        schema: dict[str, Any] = TypeAdapter(by_name).json_schema()
    return {"title": flow.name, **schema}


# ---------------------------------------------------------- running one


def run_deployment(
    name_or_id: str,
    *,
    parameters: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    poll_interval: float = 0.5,
    tags: Iterable[str] = (),
    scheduled_time: datetime | None = None,
    idempotency_key: str | None = None,
    job_variables: Mapping[str, Any] | None = None,
    work_queue_name: str | None = None,
    flow_run_name: str | None = None,
) -> FlowRun:
    """Create a run of a deployment (``"flow/deployment"`` or its id) and wait for it.

    ``timeout=None`` waits until the run reaches a final state, ``timeout=0``
    returns at once, otherwise it waits at most ``timeout`` seconds; the
    FlowRun is returned as last seen (check ``flow_run.state``). A worker of
    the deployment's pool must be running for the run to start.

    Called inside a flow, the new run is a child of that flow run, as a
    subflow is: a task run named after the deployment stands for the call in
    the caller and ends in the child's final state (COMPLETED when the call
    did not wait for one). Called inside a task, that task run is the parent.
    """
    spec = dict(locals())  # first statement: exactly the arguments
    del spec["name_or_id"]
    from weir.engine.runtime import get_runtime

    runtime = get_runtime()
    return runtime.call(_run_deployment(runtime.client, name_or_id, caller=_caller(), **spec))


async def arun_deployment(
    name_or_id: str,
    *,
    parameters: Mapping[str, Any] | None = None,
    # Not asyncio.timeout's meaning: at the deadline the run is returned as last seen.
    timeout: float | None = None,  # noqa: ASYNC109
    poll_interval: float = 0.5,
    tags: Iterable[str] = (),
    scheduled_time: datetime | None = None,
    idempotency_key: str | None = None,
    job_variables: Mapping[str, Any] | None = None,
    work_queue_name: str | None = None,
    flow_run_name: str | None = None,
) -> FlowRun:
    """:func:`run_deployment` for async code: awaits instead of blocking the loop."""
    spec = dict(locals())  # first statement: exactly the arguments
    del spec["name_or_id"]
    from weir.engine.runtime import get_runtime

    runtime = get_runtime()
    return await runtime.acall(_run_deployment(runtime.client, name_or_id, caller=_caller(), **spec))


@dataclass(frozen=True)
class _Caller:
    """Where ``run_deployment`` was called from (read on the caller's thread: context variables)."""

    flow_run_id: str | None
    task_run_id: str | None


def _caller() -> _Caller:
    from weir.context import flow_run_ctx, task_run_ctx

    flow_ctx, task_ctx = flow_run_ctx.get(), task_run_ctx.get()
    return _Caller(flow_ctx.flow_run_id if flow_ctx else None, task_ctx.task_run_id if task_ctx else None)


async def _run_deployment(
    client: AsyncWeirClient,
    name_or_id: str,
    *,
    caller: _Caller,
    timeout: float | None,  # noqa: ASYNC109 - see arun_deployment
    poll_interval: float,
    flow_run_name: str | None,
    **options: Any,
) -> FlowRun:
    deployment = await read_deployment(client, name_or_id)
    assert deployment.id is not None  # stored deployments always have one
    full_name = f"{deployment.flow_name}/{deployment.name}"
    parent = caller.task_run_id
    link = None  # in a flow (not a task): a task run of the caller stands for this call
    if parent is None and caller.flow_run_id is not None:
        link_run = await client.create_task_run(
            flow_run_id=caller.flow_run_id,
            name=f"run_deployment-{full_name}",
            task_key=f"run_deployment:{full_name}",
            dynamic_key=str(uuid.uuid4()),
            state=State(type=StateType.RUNNING),
        )
        parent = link = link_run.id
    try:
        flow_run_id = await client.create_flow_run_from_deployment(
            deployment.id, name=flow_run_name, parent_task_run_id=parent, **options
        )
        run = await wait_for_flow_run(client, flow_run_id, timeout=timeout, poll_interval=poll_interval)
    except BaseException as exc:
        if link is not None:
            failed = State(type=StateType.FAILED, message=f"run_deployment {full_name}: {exc!r}")
            await _end_link(client, link, failed)
        raise
    if link is not None:
        if run.state is not None and run.state.is_final():
            end = State(type=run.state.type, message=f"flow run {run.name} ended {run.state.display_name}")
        else:
            end = State(type=StateType.COMPLETED, message=f"created flow run {run.name} (not waited for)")
        await _end_link(client, link, end)
    return run


async def _end_link(client: AsyncWeirClient, task_run_id: str, state: State) -> None:
    """End the task run that stands for a run_deployment call (best effort: the call's outcome stands)."""
    try:
        await client.set_task_run_state(task_run_id, state, force=True)
    except WeirError as exc:
        log.warning("could not end task run %s of run_deployment: %s", task_run_id, exc)


async def read_deployment(client: AsyncWeirClient, name_or_id: str) -> Deployment:
    """A deployment by full name (``"flow/deployment"``, has a ``/``) or by id."""
    if "/" in name_or_id:
        return await client.read_deployment(name=name_or_id)
    return await client.read_deployment(name_or_id)


async def wait_for_flow_run(
    client: AsyncWeirClient,
    flow_run_id: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - see arun_deployment
    poll_interval: float = 0.5,
    on_state: Callable[[FlowRun], None] | None = None,
) -> FlowRun:
    """Read a flow run until it is final or ``timeout`` seconds passed; the last read.

    The run's state events wake the wait early; reading every
    ``poll_interval`` seconds keeps it correct when events are late or the
    events service is away. ``on_state`` is called with the run each time
    its state is seen to change (the CLI's ``--watch`` prints it).
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    changed = asyncio.Event()
    listener = None if timeout == 0 else asyncio.create_task(_listen(client, flow_run_id, changed))
    seen: str | None = None
    try:
        while True:
            changed.clear()
            flow_run = await client.read_flow_run(flow_run_id)
            state_id = flow_run.state.id if flow_run.state else None
            if on_state is not None and state_id != seen:
                seen = state_id
                on_state(flow_run)
            if flow_run.state is not None and flow_run.state.is_final():
                return flow_run
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return flow_run
            pause = poll_interval if remaining is None else min(poll_interval, remaining)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await changed.wait()
    finally:
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


async def _listen(client: AsyncWeirClient, flow_run_id: str, changed: asyncio.Event) -> None:
    # Resource ids of run events are prefixed by kind: weir.flow-run.<id>.
    flt = EventFilter(event_prefixes=("weir.flow-run.",), resource_ids=(f"weir.flow-run.{flow_run_id}",))
    try:
        async for _ in client.subscribe_events(flt):
            changed.set()
    except WeirError:
        pass  # the polling loop does not depend on events
