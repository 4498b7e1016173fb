"""What the engine knows about the run the code is in (context variables)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class FlowRunContext:
    flow_run_id: str
    flow_name: str
    name: str
    parameters: dict[str, Any]
    tags: frozenset[str]
    run_count: int
    scheduled_start: datetime | None
    options: Any
    task_runner: Any = None
    #: Occurrences of each (task key, input hash) in this flow run (deterministic identity).
    occurrences: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Task runs started by this flow run; the flow ends Failed when one failed unhandled.
    failed_unhandled: list[BaseException] = field(default_factory=list)
    parent_task_run_id: str | None = None
    log_prints: bool = False
    #: Futures submitted in this flow run: waited for before the flow ends.
    futures: list[Any] = field(default_factory=list)
    #: Final states of calls completed in earlier attempts of this flow run, by run id
    #: (None when the flow has no retries: nothing to reuse).
    completed: dict[str, Any] | None = None
    #: The bodies of this attempt (``weir.engine.interrupts.Scope``): stopped together on a
    #: cancel, a crash or the flow's timeout; a stopped scope starts no more task runs.
    scope: Any = None

    def next_occurrence(self, task_key: str, input_hash: str) -> int:
        with self.lock:
            self.occurrences[(task_key, input_hash)] += 1
            return self.occurrences[(task_key, input_hash)]


@dataclass
class TaskRunContext:
    task_run_id: str
    task_name: str
    flow_run_id: str
    parameters: dict[str, Any]
    tags: frozenset[str]
    run_count: int = 1
    log_prints: bool = False


flow_run_ctx: ContextVar[FlowRunContext | None] = ContextVar("weir_flow_run", default=None)
task_run_ctx: ContextVar[TaskRunContext | None] = ContextVar("weir_task_run", default=None)
tags_ctx: ContextVar[frozenset[str]] = ContextVar("weir_tags", default=frozenset())


@contextmanager
def tags(*names: str) -> Iterator[frozenset[str]]:
    """Add tags to every run created inside the block: ``with weir.tags("etl"): ...``."""
    current = tags_ctx.get() | frozenset(names)
    token = tags_ctx.set(current)
    try:
        yield current
    finally:
        tags_ctx.reset(token)
