"""The engine's I/O points, and the two drivers that serve them.

A run is written once, as a generator that yields :class:`Wait`,
:class:`Sleep` and :class:`Call` steps. :func:`drive_sync` serves them by
blocking; :func:`drive_async` by awaiting. So sync and async flows and tasks
share one engine (STYLE.md: "Write each thing once").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Wait:
    future: concurrent.futures.Future[Any]


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Call:
    """Run the user's function; its result (or exception) is sent back."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None = None


Step = Wait | Sleep | Call
Steps = Generator[Step, Any, Any]


def drive_sync(steps: Steps) -> Any:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(step, Call):
                value = _call_sync(step)
            elif isinstance(step, Wait):
                value = step.future.result()
            else:
                time.sleep(step.seconds)
        except Exception as exc:  # sent back into the run, which decides its state
            error = exc


def _call_sync(step: Call) -> Any:
    if step.timeout is None:
        result = step.fn(*step.args, **step.kwargs)
        if inspect.iscoroutine(result):  # an async function called from a sync context
            return asyncio.run(result)
        return result
    # A sync function cannot be interrupted safely: run it on a thread (with the run's context) and stop waiting.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="weir-timeout")
    ctx = contextvars.copy_context()
    try:
        return pool.submit(ctx.run, _call_sync, Call(step.fn, step.args, step.kwargs)).result(timeout=step.timeout)
    except concurrent.futures.TimeoutError:
        raise TimeoutError(f"timed out after {step.timeout}s") from None
    finally:
        pool.shutdown(wait=False)


async def drive_async(steps: Steps) -> Any:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(step, Call):
                result = step.fn(*step.args, **step.kwargs)
                if inspect.isawaitable(result):
                    result = await (asyncio.wait_for(result, step.timeout) if step.timeout else result)
                value = result
            elif isinstance(step, Wait):
                value = await asyncio.wrap_future(step.future)
            else:
                await asyncio.sleep(step.seconds)
        except TimeoutError:
            error = TimeoutError(f"timed out after {step.timeout}s") if isinstance(step, Call) else TimeoutError()
        except Exception as exc:
            error = exc
