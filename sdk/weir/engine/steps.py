"""The engine's I/O points, and the two drivers that serve them.

A run is written once, as a generator that yields :class:`Wait`,
:class:`Sleep` and :class:`Call` steps. :func:`drive_sync` serves them by
blocking; :func:`drive_async` by awaiting. So sync and async flows and tasks
share one engine (STYLE.md: "Write each thing once").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from weir.engine.interrupts import Body, Scope


@dataclass(frozen=True, slots=True)
class Wait:
    future: concurrent.futures.Future[Any]


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Call:
    """Run the user's function; its result (or exception) is sent back.

    The driver runs it as an :class:`~weir.engine.interrupts.Body`, so its
    timeout and its scope (the flow run attempt: a cancel, a crash) can stop it.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None = None
    scope: Scope | None = None


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
                value = Body(step.timeout, step.scope).run_sync(step.fn, step.args, step.kwargs)
            elif isinstance(step, Wait):
                value = step.future.result()
            else:
                time.sleep(step.seconds)
        except BaseException as exc:  # sent back into the run, which decides its state (a crash included)
            error = exc


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
                    result = await Body(step.timeout, step.scope).run_async(result)
                value = result
            elif isinstance(step, Wait):
                value = await asyncio.wrap_future(step.future)
            else:
                await asyncio.sleep(step.seconds)
        except BaseException as exc:
            error = exc
