"""``@flow``: a function whose every call is a tracked flow run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from weir.engine import identity
from weir.errors import InvalidArgument
from weir.options import RunOptions

if TYPE_CHECKING:
    from weir.client.types import Deployment

P = ParamSpec("P")
R = TypeVar("R")


class Flow(Generic[P, R]):
    """A decorated flow. ``my_flow(x)`` runs it and returns its value (or raises);
    ``my_flow(x, return_state=True)`` returns the final State. Calling a flow
    inside a flow makes a subflow: a child flow run linked to a task run of
    the parent."""

    def __init__(self, fn: Callable[P, R], options: RunOptions) -> None:
        self.fn = fn
        self.options = options
        self.name = options.name or fn.__name__.replace("_", "-")
        self.flow_key = identity.callable_key(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        self._adapters: dict[str, Any] | None = None
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        _load_engine()

    def with_options(self, **changes: Any) -> Flow[P, R]:
        """A copy with some options changed (same fields as ``@flow``)."""
        return Flow(self.fn, self.options.merge(**changes))

    def validate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind and validate the call against the signature's type hints."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"flow {self.name!r}: {exc}") from None
        bound.apply_defaults()
        params = dict(bound.arguments)
        if not self.options.validate_parameters:
            return params
        from pydantic import TypeAdapter, ValidationError

        if self._adapters is None:
            hints = _hints(self.fn)
            self._adapters = {name: TypeAdapter(hint) for name, hint in hints.items() if name != "return"}
        for name, value in params.items():
            adapter = self._adapters.get(name)
            kind = self._signature.parameters[name].kind
            if adapter is None or kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            try:
                params[name] = adapter.validate_python(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise InvalidArgument(
                    f"flow {self.name!r}: parameter {name!r}: {first['msg']} (got {value!r:.80})", field=name
                ) from None
        return params

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return_state = bool(kwargs.pop("return_state", False))  # type: ignore[arg-type]
        from weir.context import flow_run_ctx
        from weir.engine.flow_engine import flow_run
        from weir.engine.runtime import get_runtime
        from weir.engine.steps import drive_async, drive_sync

        params = self.validate(args, dict(kwargs))
        steps = flow_run(self, get_runtime(), params, return_state, flow_run_ctx.get())
        if self.is_async:
            return drive_async(steps)  # type: ignore[return-value]
        return drive_sync(steps)  # type: ignore[no-any-return]

    def deploy(self, name: str, *, work_pool_name: str, **options: Any) -> Deployment:
        """Create or replace the deployment ``<flow>/<name>``, run by workers of ``work_pool_name``::

            etl.deploy("nightly", work_pool_name="local", cron="0 3 * * *", parameters={"full": True})

        Options are those of :func:`weir.deployments.deploy` (schedules,
        parameters, job_variables, tags, concurrency_limit ...).
        """
        from weir.deployments import deploy

        return deploy(self, name=name, work_pool_name=work_pool_name, **options)

    def serve(
        self,
        name: str,
        *,
        cron: str | None = None,
        interval: float | timedelta | None = None,
        rrule: str | None = None,
        timezone: str = "UTC",
        parameters: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        limit: int | None = None,
        **options: Any,
    ) -> None:
        """Deploy this flow as ``name`` and run its runs in this process until interrupted.

        No work pool or worker to set up: the process is its own worker.
        ``limit`` caps how many runs execute at once.
        """
        from weir.workers.serve import serve_flow

        serve_flow(
            self,
            name,
            cron=cron,
            interval=interval,
            rrule=rrule,
            timezone=timezone,
            parameters=parameters,
            tags=tags,
            limit=limit,
            **options,
        )

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"


def _load_engine() -> None:
    """Import the engine, and the typed client it runs on: about 0.15 s, once per process.

    Done when a flow is defined rather than at its first call, so that the
    first call costs what later ones do (a service's first request, a
    benchmark's timed region), and not at ``import weir``, which the CLI and
    the server pay without ever running a flow.
    """
    import weir.engine.flow_engine
    import weir.engine.runtime
    import weir.engine.steps  # noqa: F401


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: validate nothing rather than fail the call
        return {}


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    description: str | None = None,
    version: str | None = None,
    tags: Iterable[str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: float | Iterable[float] | None = None,
    timeout_seconds: float | None = None,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_serializer: Any = None,
    log_prints: bool | None = None,
    validate_parameters: bool | None = None,
    task_runner: Any = None,
    on_completion: Iterable[Callable[..., Any]] | None = None,
    on_failure: Iterable[Callable[..., Any]] | None = None,
    on_cancellation: Iterable[Callable[..., Any]] | None = None,
    on_crashed: Iterable[Callable[..., Any]] | None = None,
    on_running: Iterable[Callable[..., Any]] | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(fn: Callable[P, R] | None = None, /, **options: Any) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Make a function a flow: ``@flow`` or ``@flow(name="etl", retries=1)``."""
    built = RunOptions.build(**options)
    if fn is not None:
        return Flow(fn, built)
    return lambda f: Flow(f, built)
