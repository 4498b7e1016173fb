"""Weir's own domain types, as the typed client returns and accepts them.

These are frozen pydantic models: they validate on construction, compare by
value, serialise to JSON (``model.model_dump(mode="json")``), and serve as the
gateway's response models so its OpenAPI document is typed. The generated
protobuf classes never leave ``weir.client``; ``weir.client._convert`` turns
one into the other.

Optional references (``parent_task_run_id``, ``deployment_id`` ...) are
``None`` when unset, never ``""``; timestamps are aware UTC datetimes.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, Generic, Self, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

__all__ = [
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
    "WorkPool",
    "WorkQueue",
    "Worker",
]

T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StateType(enum.StrEnum):
    """The nine state types; named states (Late, Cached ...) ride on top."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"

    @property
    def is_final(self) -> bool:
        """True for the types a run never leaves by itself."""
        return self in _FINAL

    @classmethod
    def parse(cls, text: str) -> StateType:
        """The type named by ``text``, case-insensitive (``"completed"``)."""
        try:
            return cls(text.strip().upper())
        except ValueError:
            names = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown state type {text!r} (one of {names})") from None


_FINAL = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED})


class Decision(enum.StrEnum):
    """The orchestration service's answer to a proposed state."""

    ACCEPT = "ACCEPT"  #: the proposed state was written
    REJECT = "REJECT"  #: not written; the result's state is the run's state now
    WAIT = "WAIT"  #: propose again after ``delay_seconds``
    ABORT = "ABORT"  #: stop: the run must not go on


class FlowRunSort(enum.StrEnum):
    CREATED_DESC = "CREATED_DESC"
    CREATED_ASC = "CREATED_ASC"
    EXPECTED_START_TIME_DESC = "EXPECTED_START_TIME_DESC"
    EXPECTED_START_TIME_ASC = "EXPECTED_START_TIME_ASC"


class StateDetails(_Model):
    scheduled_time: AwareDatetime | None = None
    cache_key: str | None = None
    cache_expiration: AwareDatetime | None = None
    retry_count: int = 0
    #: Where the result lives (a storage URI/key written by the SDK).
    result_ref: str | None = None
    pause_timeout: AwareDatetime | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None
    cached_from_task_run_id: str | None = None
    fencing_token: str | None = None
    refresh_cache: bool = False


class State(_Model):
    """A run's state. Build one to propose it: ``State(type=StateType.RUNNING)``.

    ``id`` and ``timestamp`` are filled in by the server when left ``None``.
    """

    type: StateType
    name: str | None = None
    id: str | None = None
    timestamp: AwareDatetime | None = None
    message: str | None = None
    details: StateDetails = Field(default_factory=StateDetails)
    #: Small JSON value stored inline (e.g. an error description).
    data: Any = None

    #: Set by the engine on the final state of a run it executed: the return value
    #: (or the exception) held in memory, so ``result()`` needs no storage.
    _value: Any = PrivateAttr(default=None)
    _has_value: bool = PrivateAttr(default=False)
    _exception: BaseException | None = PrivateAttr(default=None)

    def with_result(self, value: Any = None, exception: BaseException | None = None) -> State:
        """This state carrying an in-memory result (engine use)."""
        self._value, self._has_value, self._exception = value, exception is None, exception
        return self

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value; for a failed run, raises its exception.

        Reads a persisted result through ``details.result_ref`` when the value
        is not held in memory (a state read back from the server).
        """
        if self._exception is not None and (raise_on_failure or not self.is_completed()):
            if raise_on_failure:
                raise self._exception
            return self._exception
        if self._has_value:
            return self._value
        if self.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED) and raise_on_failure:
            from weir.errors import FailedPrecondition

            raise FailedPrecondition(f"run ended {self.display_name}: {self.message or 'no message'}")
        if self.details.result_ref:
            from weir.results import load_result

            return load_result(self.details.result_ref)
        return None

    @property
    def display_name(self) -> str:
        """The name when there is one (``Late``), else the type (``Scheduled``)."""
        return self.name or self.type.value.capitalize()

    def is_final(self) -> bool:
        return self.type.is_final

    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED


class ProposalResult(_Model):
    """What became of a proposed state (see :class:`Decision`)."""

    decision: Decision
    #: The run's state after the decision.
    state: State | None = None
    reason: str | None = None
    delay_seconds: float = 0.0
    #: The orchestration rule that decided.
    rule: str | None = None

    @property
    def accepted(self) -> bool:
        return self.decision is Decision.ACCEPT


class RunPolicy(_Model):
    retries: int = 0
    #: Seconds to wait before retry N (the last entry repeats).
    retry_delay_seconds: tuple[float, ...] = ()


class Flow(_Model):
    id: str
    name: str
    tags: tuple[str, ...] = ()
    created: AwareDatetime | None = None
    updated: AwareDatetime | None = None


class FlowRun(_Model):
    id: str
    flow_id: str
    name: str
    flow_name: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    tags: tuple[str, ...] = ()
    parent_task_run_id: str | None = None
    deployment_id: str | None = None
    idempotency_key: str | None = None
    state: State | None = None
    policy: RunPolicy = Field(default_factory=RunPolicy)
    run_count: int = 0
    expected_start_time: AwareDatetime | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    total_run_time_seconds: float = 0.0
    heartbeat: AwareDatetime | None = None
    created: AwareDatetime | None = None
    updated: AwareDatetime | None = None


class TaskRun(_Model):
    id: str
    flow_run_id: str
    name: str
    #: Identity of the call site (task function key) ...
    task_key: str
    #: ... and of the call within the flow run (input hash + occurrence).
    dynamic_key: str
    cache_key: str | None = None
    tags: tuple[str, ...] = ()
    state: State | None = None
    policy: RunPolicy = Field(default_factory=RunPolicy)
    run_count: int = 0
    task_inputs: dict[str, Any] = Field(default_factory=dict)
    expected_start_time: AwareDatetime | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    total_run_time_seconds: float = 0.0
    created: AwareDatetime | None = None
    updated: AwareDatetime | None = None


class LogRecord(_Model):
    """One log line of a flow run (and maybe of one of its task runs)."""

    flow_run_id: str
    message: str
    level: int = 20
    name: str = ""
    task_run_id: str | None = None
    timestamp: AwareDatetime | None = None
    #: Optional client-chosen UUID so a resent record is written once.
    id: str | None = None


class Event(_Model):
    """Something that happened: ``weir.flow-run.Completed`` about a resource.

    ``resource`` carries at least ``weir.resource.id``; each entry of
    ``related`` also carries ``weir.resource.role``.
    """

    id: str
    occurred: AwareDatetime
    event: str
    resource: dict[str, str]
    related: tuple[dict[str, str], ...] = ()
    payload: dict[str, Any] = Field(default_factory=dict)
    follows: str | None = None
    received: AwareDatetime | None = None

    @property
    def resource_id(self) -> str:
        return self.resource.get("weir.resource.id", "")


class StateCount(_Model):
    type: StateType
    name: str | None = None
    count: int = 0


class HistoryBucket(_Model):
    start: datetime
    end: datetime
    states: tuple[StateCount, ...] = ()


class Page(_Model, Generic[T]):
    """One page of a listing; pass ``next_page_token`` back for the next one.

    ``next_page_token`` is ``None`` on the last page.
    """

    items: list[T]
    next_page_token: str | None = None
    #: Total matching items, when the service counts them (events).
    total: int | None = None


# ----------------------------------------------------------------- filters
# Each mirrors the proto filter of the same name; an empty filter matches all.


class TimeRange(_Model):
    after: AwareDatetime | None = None  #: inclusive
    before: AwareDatetime | None = None  #: exclusive


class FlowFilter(_Model):
    name_like: str | None = None
    names: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()


class FlowRunFilter(_Model):
    ids: tuple[str, ...] = ()
    state_types: tuple[StateType, ...] = ()
    state_names: tuple[str, ...] = ()
    name_like: str | None = None
    tags_all: tuple[str, ...] = ()
    flow_ids: tuple[str, ...] = ()
    flow_names: tuple[str, ...] = ()
    parent_task_run_id: str | None = None
    parent_flow_run_id: str | None = None
    deployment_id: str | None = None
    created: TimeRange | None = None
    expected_start_time: TimeRange | None = None
    start_time: TimeRange | None = None


class TaskRunFilter(_Model):
    ids: tuple[str, ...] = ()
    flow_run_ids: tuple[str, ...] = ()
    state_types: tuple[StateType, ...] = ()
    state_names: tuple[str, ...] = ()
    name_like: str | None = None
    tags_all: tuple[str, ...] = ()
    created: TimeRange | None = None
    start_time: TimeRange | None = None


class LogFilter(_Model):
    flow_run_id: str | None = None
    task_run_id: str | None = None
    #: Python logging level: 30 keeps WARNING and above.
    level_ge: int = 0
    timestamp: TimeRange | None = None
    text_like: str | None = None


class EventFilter(_Model):
    #: Events whose name starts with any of these.
    event_prefixes: tuple[str, ...] = ()
    #: Events whose resource (or a related resource) has any of these ids.
    resource_ids: tuple[str, ...] = ()
    occurred: TimeRange | None = None


# ------------------------------------------- deployments, pools, queues, workers


class CollisionStrategy(enum.StrEnum):
    """What a deployment at its concurrency limit does with one more run."""

    ENQUEUE = "ENQUEUE"  #: the run waits for a free slot
    CANCEL_NEW = "CANCEL_NEW"  #: the run is cancelled


class Schedule(_Model):
    """When a deployment runs: exactly one of ``interval``, ``cron`` or ``rrule``.

    Build one with a helper::

        Schedule.every(timedelta(hours=1))
        Schedule.from_cron("0 6 * * mon-fri", timezone="Europe/Paris")
        Schedule.from_rrule("FREQ=WEEKLY;BYDAY=MO")

    The server checks cron and rrule texts and time zones (an error names
    e.g. ``deployment.schedules[0].cron``).
    """

    interval: timedelta | None = None
    cron: str | None = None
    rrule: str | None = None
    #: IANA zone the schedule is read in (cron "9 o'clock" is 9 o'clock there).
    timezone: str = "UTC"
    #: Interval schedules count from here (server default when unset).
    anchor: AwareDatetime | None = None
    active: bool = True
    #: Set by the server.
    id: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [k for k in ("interval", "cron", "rrule") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a schedule has exactly one of interval, cron or rrule (got {given or 'none'})")
        if self.interval is not None and self.interval <= timedelta(0):
            raise ValueError(f"interval must be positive, got {self.interval}")
        return self

    @classmethod
    def every(cls, interval: float | timedelta, *, anchor: datetime | None = None, timezone: str = "UTC") -> Schedule:
        """Every ``interval`` (seconds or a timedelta), counted from ``anchor``."""
        if not isinstance(interval, timedelta):
            interval = timedelta(seconds=interval)
        return cls(interval=interval, anchor=anchor, timezone=timezone)

    @classmethod
    def from_cron(cls, expression: str, *, timezone: str = "UTC") -> Schedule:
        """At the times of a cron expression (croniter syntax), in ``timezone``."""
        return cls(cron=expression, timezone=timezone)

    @classmethod
    def from_rrule(cls, text: str, *, timezone: str = "UTC") -> Schedule:
        """At the times of an RFC 5545 recurrence rule, in ``timezone``."""
        return cls(rrule=text, timezone=timezone)


class Deployment(_Model):
    """A flow made runnable by the server: where its code is, which work pool
    runs it, its default parameters and its schedules.

    Unique per ``(flow_name, name)``; :attr:`full_name` is ``"flow/name"``.
    ``id`` is ``None`` only on a draft not stored yet (see
    ``validate_job_variables``). ``concurrency_limit`` 0 means unlimited.
    """

    flow_name: str
    name: str
    id: str | None = None
    version: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    #: ``path/to/file.py:function`` or ``package.module:function``.
    entrypoint: str | None = None
    #: Where the entrypoint is resolved (an absolute path on the worker).
    working_directory: str | None = None
    #: Default parameters of every run (a run's own override them).
    parameters: dict[str, Any] = Field(default_factory=dict)
    #: JSON schema of the flow's parameters.
    parameter_schema: dict[str, Any] = Field(default_factory=dict)
    #: Overrides of the work pool's base job template variables.
    job_variables: dict[str, Any] = Field(default_factory=dict)
    work_pool_name: str | None = None
    #: ``None``: the pool's default queue.
    work_queue_name: str | None = None
    schedules: tuple[Schedule, ...] = ()
    paused: bool = False
    concurrency_limit: int = 0
    collision_strategy: CollisionStrategy = CollisionStrategy.ENQUEUE
    #: Retry policy given to every run created from the deployment.
    retries: int = 0
    retry_delay_seconds: tuple[float, ...] = ()
    created: AwareDatetime | None = None
    updated: AwareDatetime | None = None

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"


class WorkPool(_Model):
    """Where deployments' runs wait for workers; keyed by name.

    ``base_job_template`` holds ``job_configuration`` and a JSON schema of
    its ``variables``; deployments and runs override variables.
    """

    name: str
    type: str = "process"
    id: str | None = None
    base_job_template: dict[str, Any] = Field(default_factory=dict)
    paused: bool = False
    concurrency_limit: int = 0
    #: Every pool has a queue named ``default``.
    default_queue_name: str | None = None
    description: str | None = None
    created: AwareDatetime | None = None
    updated: AwareDatetime | None = None


class WorkQueue(_Model):
    """A queue of a work pool, keyed by ``(work_pool_name, name)``; lower
    ``priority`` numbers are served first."""

    work_pool_name: str
    name: str
    id: str | None = None
    priority: int = 1
    concurrency_limit: int = 0
    paused: bool = False
    description: str | None = None
    created: AwareDatetime | None = None


class Worker(_Model):
    """A worker daemon as its pool last heard from it."""

    id: str
    name: str
    work_pool_name: str
    #: ``ONLINE`` or ``OFFLINE``, as the server reports it.
    status: str = ""
    last_heartbeat: AwareDatetime | None = None
    free_slots: int = 0
    work_queue_names: tuple[str, ...] = ()
    active_flow_run_ids: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)


class JobVariablesCheck(_Model):
    """The answer of a job-variables dry run.

    When invalid, ``layer`` says which layer broke the pool's schema (``pool``,
    ``deployment`` or ``flow_run``) and ``field`` which variable.
    """

    valid: bool
    layer: str | None = None
    field: str | None = None
    message: str | None = None
