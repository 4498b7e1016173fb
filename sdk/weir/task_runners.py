"""Where submitted task runs execute.

``ThreadPoolTaskRunner`` (the default) keeps a bounded pool: threads never
grow with the number of submitted tasks. ``ProcessPoolTaskRunner`` runs each
submitted call in a worker process (its function and arguments must pickle).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
from collections.abc import Callable
from typing import Any

__all__ = ["ProcessPoolTaskRunner", "TaskRunner", "ThreadPoolTaskRunner"]


class TaskRunner:
    def start(self) -> None: ...

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        raise NotImplementedError

    def shutdown(self) -> None: ...


class ThreadPoolTaskRunner(TaskRunner):
    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or min(16, (os.cpu_count() or 1) + 4)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(self.max_workers, thread_name_prefix="weir-task")

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        if self._pool is None:
            self.start()
        assert self._pool is not None
        ctx = contextvars.copy_context()  # the run context follows the call onto the pool thread
        return self._pool.submit(ctx.run, fn, *args)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def duplicate(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(self.max_workers)


class ProcessPoolTaskRunner(ThreadPoolTaskRunner):
    """Task runs are tracked from this process; their bodies run in worker processes."""

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> None:
        super().start()
        import multiprocessing

        self._processes = concurrent.futures.ProcessPoolExecutor(
            self.max_workers, mp_context=multiprocessing.get_context("spawn")
        )

    def run_in_process(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        assert self._processes is not None
        return self._processes.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        super().shutdown()
        if self._processes is not None:
            self._processes.shutdown(wait=True)
            self._processes = None

    def duplicate(self) -> ProcessPoolTaskRunner:
        return ProcessPoolTaskRunner(self.max_workers)
