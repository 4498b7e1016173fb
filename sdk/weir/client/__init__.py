"""The typed client of a Weir server.

``AsyncWeirClient`` is the client; ``WeirClient`` is its blocking twin;
``get_client()`` builds one from ``WEIR_*`` settings. Values are the domain
types of :mod:`weir.client.types`; failures are :mod:`weir.errors`.
"""

from weir.client._client import SERVICE_NAMES, AsyncWeirClient, get_client
from weir.client._sync import WeirClient
from weir.client.types import (
    CollisionStrategy,
    Decision,
    Deployment,
    Event,
    EventFilter,
    Flow,
    FlowFilter,
    FlowRun,
    FlowRunFilter,
    FlowRunSort,
    HistoryBucket,
    JobVariablesCheck,
    LogFilter,
    LogRecord,
    Page,
    ProposalResult,
    RunPolicy,
    Schedule,
    State,
    StateCount,
    StateDetails,
    StateType,
    TaskRun,
    TaskRunFilter,
    TimeRange,
    Worker,
    WorkPool,
    WorkQueue,
)

__all__ = [
    "SERVICE_NAMES",
    "AsyncWeirClient",
    "CollisionStrategy",
    "Decision",
    "Deployment",
    "Event",
    "EventFilter",
    "Flow",
    "FlowFilter",
    "FlowRun",
    "FlowRunFilter",
    "FlowRunSort",
    "HistoryBucket",
    "JobVariablesCheck",
    "LogFilter",
    "LogRecord",
    "Page",
    "ProposalResult",
    "RunPolicy",
    "Schedule",
    "State",
    "StateCount",
    "StateDetails",
    "StateType",
    "TaskRun",
    "TaskRunFilter",
    "TimeRange",
    "WeirClient",
    "WorkPool",
    "WorkQueue",
    "Worker",
    "get_client",
]
