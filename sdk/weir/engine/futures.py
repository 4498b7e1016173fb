"""Futures of submitted task runs, and waiting on several of them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from weir.errors import WeirError

if TYPE_CHECKING:
    from weir.client.types import State

R = TypeVar("R")

__all__ = ["FutureList", "WeirFuture", "all_done", "as_completed", "unmapped", "wait"]


class WeirFuture(Generic[R]):
    """The future of a submitted task run: ``.result()``, ``.wait()``, ``.state``."""

    def __init__(
        self,
        task_run_id: str,
        future: concurrent.futures.Future[State],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        task: asyncio.Task[Any] | None = None,
    ) -> None:
        self.task_run_id = task_run_id
        self._future = future
        #: Set once someone looked at the outcome; a failure nobody looked at fails the flow.
        self.observed = False
        #: An async task submitted from an async flow runs on the flow's loop, as this asyncio task.
        self._loop = loop
        self._task = task

    @property
    def __weir_identity__(self) -> str:
        return self.task_run_id

    def _refuse_blocking_own_loop(self) -> None:
        """Blocking the loop this run needs would hang it forever: say so instead."""
        if self._loop is None or self._future.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._loop:
            raise WeirError(
                f"task run {self.task_run_id} runs on this event loop: use `await future` "
                "(or `await future.wait_async()`) in an async flow, not a blocking call"
            )

    def wait(self, timeout: float | None = None) -> None:
        self._refuse_blocking_own_loop()
        concurrent.futures.wait([self._future], timeout=timeout)

    async def wait_async(self) -> None:
        """Wait without blocking the event loop."""
        if not self._future.done():
            await asyncio.wait([asyncio.wrap_future(self._future)])

    def __await__(self) -> Generator[Any, None, R]:
        """``await future`` in an async flow: the result (raises when the run failed)."""
        yield from self.wait_async().__await__()
        return self.result()

    def done(self) -> bool:
        return self._future.done()

    @property
    def state(self) -> State:
        """The final state (waits for it)."""
        self._refuse_blocking_own_loop()
        self.observed = True
        return self._final()

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        self._refuse_blocking_own_loop()
        self.observed = True
        concurrent.futures.wait([self._future], timeout=timeout)
        if not self._future.done():
            raise TimeoutError(f"task run {self.task_run_id} did not finish within {timeout}s")
        return self._final().result(raise_on_failure=raise_on_failure)  # type: ignore[no-any-return]

    def _final(self) -> State:
        try:
            return self._future.result()
        except Exception as exc:  # the engine failed around the call: still a failed run to the user
            from weir.client.types import State, StateType

            return State(type=StateType.FAILED, message=f"{type(exc).__name__}: {exc}").with_result(exception=exc)

    def failed_state(self) -> State | None:
        """The final state when it is not Completed (None while running or when completed)."""
        if not self._future.done():
            return None
        state = self._final()
        return None if state.is_completed() else state

    def failed_unobserved(self) -> BaseException | None:
        if self.observed:
            return None
        state = self.failed_state()
        if state is None:
            return None
        return state._exception or RuntimeError(f"task run ended {state.display_name}")

    def __repr__(self) -> str:
        return f"WeirFuture({self.task_run_id}, done={self.done()})"


class FutureList(list[WeirFuture[R]]):
    """What ``task.map`` returns: a list of futures with list-wide ``result()``/``wait()``."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        return [f.result(timeout=timeout, raise_on_failure=raise_on_failure) for f in self]

    def __await__(self) -> Generator[Any, None, list[R]]:
        """``await task.map(...)`` in an async flow: every result, in order."""
        for f in self:
            yield from f.wait_async().__await__()
        return self.result()


class unmapped(Generic[R]):
    """Pass a value whole to every mapped call: ``task.map(xs, factor=unmapped(3))``."""

    def __init__(self, value: R) -> None:
        self.value = value


def wait(futures: Iterable[WeirFuture[Any]], timeout: float | None = None) -> tuple[set[Any], set[Any]]:
    """Wait for futures; returns (done, not_done)."""
    items = list(futures)
    for f in items:
        f._refuse_blocking_own_loop()
    by_inner = {f._future: f for f in items}
    done, not_done = concurrent.futures.wait(list(by_inner), timeout=timeout)
    return {by_inner[d] for d in done}, {by_inner[n] for n in not_done}


def as_completed(futures: Iterable[WeirFuture[R]], timeout: float | None = None) -> Iterator[WeirFuture[R]]:
    """Yield futures as they finish."""
    items = list(futures)
    by_inner = {f._future: f for f in items}
    for inner in concurrent.futures.as_completed(list(by_inner), timeout=timeout):
        yield by_inner[inner]


def all_done(futures: Iterable[WeirFuture[Any]]) -> concurrent.futures.Future[None]:
    """A future that resolves once every one of ``futures`` is done (the engine waits on it as a step,
    so an async flow's loop keeps running the tasks it waits for)."""
    inners = [f._future for f in futures]
    done: concurrent.futures.Future[None] = concurrent.futures.Future()
    left = [len(inners)]
    lock = threading.Lock()

    def one(_: Any) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            done.set_result(None)

    if not inners:
        done.set_result(None)
    for inner in inners:
        inner.add_done_callback(one)
    return done
