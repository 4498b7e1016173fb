"""Cache policies: how a task call turns into a cache key.

A policy computes a key from the call (its inputs, the task's source, the flow
run's parameters, the run id); ``+`` combines policies (the key of a compound
is a hash of its parts, and None if any part is None). A task run whose key
matches a still-valid completed run is answered Cached without running.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from weir.engine.identity import input_hash

__all__ = ["DEFAULT", "FLOW_PARAMETERS", "INPUTS", "NO_CACHE", "RUN_ID", "TASK_SOURCE", "CachePolicy", "CallInfo"]


@dataclass(frozen=True)
class CallInfo:
    """What a policy may look at."""

    task_key: str
    fn: Callable[..., Any]
    inputs: Mapping[str, Any]
    flow_run_id: str
    flow_parameters: Mapping[str, Any]


class CachePolicy:
    """Base: subclasses compute a key or None (no caching for this call)."""

    def compute_key(self, call: CallInfo) -> str | None:
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return CompoundPolicy((*_parts(self), *_parts(other)))


def _parts(policy: CachePolicy) -> tuple[CachePolicy, ...]:
    return policy.policies if isinstance(policy, CompoundPolicy) else (policy,)


@dataclass(frozen=True)
class CompoundPolicy(CachePolicy):
    policies: tuple[CachePolicy, ...]

    def compute_key(self, call: CallInfo) -> str | None:
        keys = [p.compute_key(call) for p in self.policies]
        if any(k is None for k in keys):
            return None
        return hashlib.blake2b("|".join(keys).encode(), digest_size=16).hexdigest()  # type: ignore[arg-type]


class _Inputs(CachePolicy):
    def compute_key(self, call: CallInfo) -> str | None:
        return f"{call.task_key}:{input_hash(call.inputs)}"

    def __repr__(self) -> str:
        return "INPUTS"


class _TaskSource(CachePolicy):
    def compute_key(self, call: CallInfo) -> str | None:
        try:
            source = inspect.getsource(call.fn)
        except (OSError, TypeError):
            source = call.task_key
        return hashlib.blake2b(source.encode(), digest_size=16).hexdigest()

    def __repr__(self) -> str:
        return "TASK_SOURCE"


class _FlowParameters(CachePolicy):
    def compute_key(self, call: CallInfo) -> str | None:
        return input_hash(call.flow_parameters)

    def __repr__(self) -> str:
        return "FLOW_PARAMETERS"


class _RunId(CachePolicy):
    def compute_key(self, call: CallInfo) -> str | None:
        return call.flow_run_id

    def __repr__(self) -> str:
        return "RUN_ID"


class _NoCache(CachePolicy):
    def compute_key(self, call: CallInfo) -> str | None:
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return self

    def __repr__(self) -> str:
        return "NO_CACHE"


@dataclass(frozen=True)
class KeyFunction(CachePolicy):
    """Wraps ``cache_key_fn(context, inputs)``."""

    fn: Callable[..., str | None]

    def compute_key(self, call: CallInfo) -> str | None:
        return self.fn(call, dict(call.inputs))


INPUTS: CachePolicy = _Inputs()
TASK_SOURCE: CachePolicy = _TaskSource()
FLOW_PARAMETERS: CachePolicy = _FlowParameters()
RUN_ID: CachePolicy = _RunId()
NO_CACHE: CachePolicy = _NoCache()
DEFAULT: CachePolicy = INPUTS + TASK_SOURCE + RUN_ID
