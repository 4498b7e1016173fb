"""Weir: a workflow orchestrator for Python.

    from weir import flow, task

    @task
    def add(x: int, y: int) -> int:
        return x + y

    @flow
    def pipeline(n: int) -> int:
        return add(n, 1)

The typed client lives in ``weir.client``, errors in ``weir.errors``. ``import
weir`` stays light: no services, databases or web framework are loaded.
"""

from weir.cache_policies import FLOW_PARAMETERS, INPUTS, NO_CACHE, RUN_ID, TASK_SOURCE
from weir.context import tags
from weir.engine.futures import as_completed, unmapped, wait
from weir.errors import WeirError
from weir.flows import Flow, flow
from weir.options import exponential_backoff
from weir.tasks import Task, task

__version__ = "0.1.0"

__all__ = [
    "FLOW_PARAMETERS",
    "INPUTS",
    "NO_CACHE",
    "RUN_ID",
    "TASK_SOURCE",
    "Flow",
    "Task",
    "WeirError",
    "__version__",
    "as_completed",
    "exponential_backoff",
    "flow",
    "tags",
    "task",
    "unmapped",
    "wait",
]
