"""Where submitted task runs execute.

``ThreadPoolTaskRunner`` (the default) keeps a bounded pool: threads never
grow with the number of submitted tasks. ``ProcessPoolTaskRunner`` runs the
body of each submitted call in a worker process; the run itself (its
records, retries, caching) is still tracked from the flow's process. The
function travels by value (cloudpickle), so decorated functions and closures
work; its arguments and return value must pickle.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
from collections.abc import Callable
from typing import Any

__all__ = ["ProcessPoolTaskRunner", "TaskRunner", "ThreadPoolTaskRunner"]


class TaskRunner:
    """Runs submitted calls; the engine makes a fresh copy (``duplicate``) for every flow run attempt."""

    def start(self) -> None: ...

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        raise NotImplementedError

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking calls; ``wait=False`` (a crashed flow) drops calls not started yet."""

    def duplicate(self) -> TaskRunner:
        raise NotImplementedError


class ThreadPoolTaskRunner(TaskRunner):
    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or min(16, (os.cpu_count() or 1) + 4)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.max_workers, thread_name_prefix="weir-task")

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        self.start()
        assert self._pool is not None
        ctx = contextvars.copy_context()  # the run context follows the call onto the pool thread
        return self._pool.submit(ctx.run, fn, *args)

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
            self._pool = None

    def duplicate(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(self.max_workers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_workers={self.max_workers})"


class ProcessPoolTaskRunner(ThreadPoolTaskRunner):
    """Task runs are tracked from this process (one thread per worker process); their bodies run
    in worker processes started with ``spawn`` (safe beside the engine's threads)."""

    runs_in_processes = True

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers or os.cpu_count() or 1)
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> None:
        super().start()
        if self._processes is None:
            import multiprocessing

            self._processes = concurrent.futures.ProcessPoolExecutor(
                self.max_workers, mp_context=multiprocessing.get_context("spawn")
            )

    def run_in_process(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a worker process and wait for its result (or exception)."""
        import cloudpickle

        assert self._processes is not None, "runner not started"
        payload = cloudpickle.dumps((fn, args, kwargs))
        return self._processes.submit(_call_pickled, payload).result()

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)
        if self._processes is not None:
            self._processes.shutdown(wait=wait, cancel_futures=not wait)
            self._processes = None

    def duplicate(self) -> ProcessPoolTaskRunner:
        return ProcessPoolTaskRunner(self.max_workers)


def _call_pickled(payload: bytes) -> Any:
    """In the worker process: the user's function, run to its value (coroutines too)."""
    import inspect
    import pickle

    fn, args, kwargs = pickle.loads(payload)
    result = fn(*args, **kwargs)
    if inspect.iscoroutine(result):
        import asyncio

        return asyncio.run(result)
    return result
