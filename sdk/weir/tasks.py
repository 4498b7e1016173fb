"""``@task``: a function whose calls inside a flow become tracked task runs."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from weir.context import flow_run_ctx
from weir.engine import identity
from weir.options import RunOptions

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A decorated task. Call it like the function; inside a flow the call is a task run.

    ``my_task(x)`` runs it and returns its value (or raises);
    ``my_task(x, return_state=True)`` returns the final State instead;
    ``my_task.submit(x)`` / ``my_task.map(xs)`` run it on the flow's task runner.
    """

    def __init__(self, fn: Callable[P, R], options: RunOptions) -> None:
        self.fn = fn
        self.options = options
        self.name = options.name or fn.__name__
        self.task_key = identity.callable_key(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A copy of this task with some options changed (same fields as ``@task``)."""
        return Task(self.fn, self.options.merge(**changes))

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return_state = bool(kwargs.pop("return_state", False))  # type: ignore[arg-type]
        wait_for = kwargs.pop("wait_for", None)  # type: ignore[arg-type]
        flow = flow_run_ctx.get()
        if flow is None:
            # Outside a flow a task is just its function.
            return self.fn(*args, **kwargs)
        from weir.engine.calls import call_task

        return call_task(self, flow, args, dict(kwargs), return_state=return_state, wait_for=wait_for)  # type: ignore[return-value]

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        """Run on the flow's task runner; returns a future (``.result()``, ``.wait()``)."""
        from weir.engine.calls import submit_task

        return submit_task(self, args, kwargs)

    def map(self, *iterables: Any, **kwargs: Any) -> Any:
        """Submit one run per element (zip of the iterables); ``unmapped(x)`` is passed whole."""
        from weir.engine.calls import map_task

        return map_task(self, iterables, kwargs)

    def __repr__(self) -> str:
        return f"Task({self.name!r})"


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    description: str | None = None,
    version: str | None = None,
    tags: Iterable[str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: float | Iterable[float] | Callable[[int], float] | None = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: Callable[[Any, Any, Any], bool] | None = None,
    timeout_seconds: float | None = None,
    cache_policy: Any = None,
    cache_key_fn: Callable[..., str | None] | None = None,
    cache_expiration: Any = None,
    refresh_cache: bool | None = None,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_serializer: Any = None,
    log_prints: bool | None = None,
    on_completion: Iterable[Callable[..., Any]] | None = None,
    on_failure: Iterable[Callable[..., Any]] | None = None,
    on_running: Iterable[Callable[..., Any]] | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Callable[P, R] | None = None, /, **options: Any) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Make a function a task: ``@task`` or ``@task(retries=2, cache_policy=INPUTS)``."""
    built = RunOptions.build(**options)
    if fn is not None:
        return Task(fn, built)
    return lambda f: Task(f, built)


AsyncTask = Task[P, Awaitable[R]]
