"""The options of ``@flow`` and ``@task``, declared once.

One frozen object carries them; the decorators build it, ``with_options``
copies it with changes, and the engine reads it. Nothing else keeps a second
list of option names.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, Literal

from weir.errors import InvalidArgument

RetryDelay = float | Sequence[float] | Callable[[int], float]
Hook = Callable[..., Any]


def exponential_backoff(backoff_factor: float, *, retries: int = 10) -> list[float]:
    """Delays ``factor * 2**n`` for retries 0..retries-1: ``retry_delay_seconds=exponential_backoff(1)``."""
    return [backoff_factor * 2**n for n in range(retries)]


@dataclass(frozen=True)
class RunOptions:
    """Everything a decorator accepts; flows and tasks share the fields they have in common."""

    name: str | None = None
    description: str | None = None
    version: str | None = None
    tags: frozenset[str] = frozenset()
    retries: int = 0
    retry_delay_seconds: RetryDelay = 0.0
    retry_jitter_factor: float | None = None
    retry_condition_fn: Callable[[Any, Any, Any], bool] | None = None
    timeout_seconds: float | None = None
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: Literal["json", "pickle"] | Any | None = None
    log_prints: bool | None = None
    validate_parameters: bool = True
    on_completion: tuple[Hook, ...] = ()
    on_failure: tuple[Hook, ...] = ()
    on_cancellation: tuple[Hook, ...] = ()
    on_crashed: tuple[Hook, ...] = ()
    on_running: tuple[Hook, ...] = ()
    # tasks only
    cache_policy: Any = None
    cache_key_fn: Callable[..., str | None] | None = None
    cache_expiration: timedelta | None = None
    refresh_cache: bool | None = None
    # flows only
    task_runner: Any = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise InvalidArgument(f"retries must be >= 0, got {self.retries}", field="retries")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise InvalidArgument(f"timeout_seconds must be > 0, got {self.timeout_seconds}", field="timeout_seconds")
        if self.retry_jitter_factor is not None and self.retry_jitter_factor < 0:
            raise InvalidArgument("retry_jitter_factor must be >= 0", field="retry_jitter_factor")

    @classmethod
    def build(cls, **values: Any) -> RunOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        if "tags" in values and values["tags"] is not None:
            values["tags"] = frozenset(values["tags"])
        for hook in ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running"):
            if values.get(hook) is not None:
                values[hook] = tuple(values[hook])
        return cls(**{k: v for k, v in values.items() if v is not None or k in {"cache_policy"}})

    def merge(self, **changes: Any) -> RunOptions:
        """A copy with the given options changed (``with_options``)."""
        clean = {k: v for k, v in changes.items() if v is not None}
        if "tags" in clean:
            clean["tags"] = frozenset(clean["tags"])
        for hook in ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running"):
            if hook in clean:
                clean[hook] = tuple(clean[hook])
        return replace(self, **clean)

    def retry_delays(self) -> tuple[float, ...]:
        """Seconds before each retry, as the server's run policy wants them."""
        delay = self.retry_delay_seconds
        if callable(delay):
            return tuple(float(delay(n)) for n in range(max(self.retries, 1)))
        if isinstance(delay, int | float):
            return (float(delay),)
        return tuple(float(d) for d in delay) or (0.0,)

    def jittered(self, delay: float) -> float:
        if not self.retry_jitter_factor:
            return delay
        return delay + random.uniform(0, delay * self.retry_jitter_factor)
