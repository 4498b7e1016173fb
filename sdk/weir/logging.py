"""Run logs: ``get_run_logger()`` and ``log_prints``.

Records logged through a run logger are shown on the console and shipped to
the server in batches on the flow's SyncRuns stream (never one call per
line), so ``weir flow-run logs ID`` shows them and they are durable when the
flow returns.
"""

from __future__ import annotations

import builtins
import io
import logging
import sys
import threading
import uuid
from typing import Any

from weir.context import flow_run_ctx, task_run_ctx

__all__ = ["get_run_logger", "install_print_hook"]

_console_lock = threading.Lock()
_configured = False


class RunLogHandler(logging.Handler):
    """Turns records that carry run ids into log records on the SyncRuns stream."""

    def emit(self, record: logging.LogRecord) -> None:
        flow_run_id = getattr(record, "flow_run_id", None)
        if not flow_run_id:
            return
        try:
            from google.protobuf.timestamp_pb2 import Timestamp

            from weir.engine.runtime import get_runtime
            from weir.v1 import orchestration_pb2 as pb

            ts = Timestamp()
            ts.FromNanoseconds(int(record.created * 1e9))
            message = pb.LogRecord(
                id=str(uuid.uuid4()),
                flow_run_id=flow_run_id,
                task_run_id=getattr(record, "task_run_id", "") or "",
                name=record.name,
                level=record.levelno,
                message=record.getMessage(),
                timestamp=ts,
            )
            get_runtime().sync.submit(logs=(message,))
        except Exception:
            self.handleError(record)


def _configure() -> None:
    global _configured
    with _console_lock:
        if _configured:
            return
        base = logging.getLogger("weir.runs")
        base.setLevel(logging.INFO)
        base.addHandler(RunLogHandler())
        console = logging.StreamHandler(sys.stderr)
        layout = "%(asctime)s | %(levelname)-7s | %(run_label)s - %(message)s"
        console.setFormatter(logging.Formatter(layout, "%H:%M:%S"))
        base.addHandler(console)
        base.propagate = False
        _configured = True


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def get_run_logger() -> logging.LoggerAdapter[logging.Logger]:
    """A logger for the current flow or task run; raises outside of one."""
    _configure()
    task = task_run_ctx.get()
    flow = flow_run_ctx.get()
    if task is not None:
        extra = {"flow_run_id": task.flow_run_id, "task_run_id": task.task_run_id, "run_label": task.task_name}
        return RunLogger(logging.getLogger("weir.runs.task_run"), extra)
    if flow is not None:
        extra = {"flow_run_id": flow.flow_run_id, "task_run_id": "", "run_label": f"{flow.flow_name}/{flow.name}"}
        return RunLogger(logging.getLogger("weir.runs.flow_run"), extra)
    from weir.errors import FailedPrecondition

    raise FailedPrecondition("get_run_logger() needs a running flow or task")


_original_print = builtins.print
_hook_lock = threading.Lock()


def _logging_print(*args: Any, **kwargs: Any) -> None:
    task = task_run_ctx.get()
    flow = flow_run_ctx.get()
    wanted = task.log_prints if task is not None else (flow.log_prints if flow is not None else False)
    if not wanted or kwargs.get("file") not in (None, sys.stdout):
        _original_print(*args, **kwargs)
        return
    buffer = io.StringIO()
    _original_print(*args, **{**kwargs, "file": buffer, "end": ""})
    get_run_logger().info(buffer.getvalue())


def install_print_hook() -> None:
    """Route ``print`` in runs with ``log_prints=True`` to the run logger (once per process)."""
    with _hook_lock:
        if builtins.print is not _logging_print:
            builtins.print = _logging_print
