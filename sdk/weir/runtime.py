"""What a flow or task can ask about the run it is in::

    from weir import runtime

    runtime.flow_run.id, runtime.flow_run.name, runtime.flow_run.parameters
    runtime.task_run.id, runtime.task_run.run_count

Outside a run every attribute is None (or empty).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from weir.context import flow_run_ctx, task_run_ctx

__all__ = ["flow_run", "task_run"]


class _FlowRun:
    @property
    def id(self) -> str | None:
        ctx = flow_run_ctx.get()
        return ctx.flow_run_id if ctx else None

    @property
    def name(self) -> str | None:
        ctx = flow_run_ctx.get()
        return ctx.name if ctx else None

    @property
    def flow_name(self) -> str | None:
        ctx = flow_run_ctx.get()
        return ctx.flow_name if ctx else None

    @property
    def parameters(self) -> dict[str, Any]:
        ctx = flow_run_ctx.get()
        return dict(ctx.parameters) if ctx else {}

    @property
    def tags(self) -> frozenset[str]:
        ctx = flow_run_ctx.get()
        return ctx.tags if ctx else frozenset()

    @property
    def run_count(self) -> int:
        ctx = flow_run_ctx.get()
        return ctx.run_count if ctx else 0

    @property
    def scheduled_start_time(self) -> datetime | None:
        ctx = flow_run_ctx.get()
        return ctx.scheduled_start if ctx else None

    @property
    def parent_task_run_id(self) -> str | None:
        ctx = flow_run_ctx.get()
        return ctx.parent_task_run_id if ctx else None


class _TaskRun:
    @property
    def id(self) -> str | None:
        ctx = task_run_ctx.get()
        return ctx.task_run_id if ctx else None

    @property
    def name(self) -> str | None:
        ctx = task_run_ctx.get()
        return ctx.task_name if ctx else None

    @property
    def parameters(self) -> dict[str, Any]:
        ctx = task_run_ctx.get()
        return dict(ctx.parameters) if ctx else {}

    @property
    def tags(self) -> frozenset[str]:
        ctx = task_run_ctx.get()
        return ctx.tags if ctx else frozenset()

    @property
    def run_count(self) -> int:
        ctx = task_run_ctx.get()
        return ctx.run_count if ctx else 0


flow_run = _FlowRun()
task_run = _TaskRun()
