"""Deterministic run identity and safe parameter encoding.

A task run is keyed by its flow run, its call site (the task key), a hash of
its inputs and an occurrence counter of that (key, hash) pair, and its id is
derived from that key. So the same call in a retried flow run finds the same
task run, and concurrent calls with different inputs can never swap identities
(Prefect #22259), whatever order they start in.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from weir.errors import InvalidArgument

MAX_DEPTH = 64
_NAMESPACE = uuid.UUID("6f1c2d4e-3a5b-4c7d-8e9f-0a1b2c3d4e5f")
_PRIMITIVES = (str, int, float, bool, type(None))


def task_run_id(flow_run_id: str, task_key: str, dynamic_key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{flow_run_id}/{task_key}/{dynamic_key}"))


def callable_key(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def to_jsonable(value: Any, *, name: str = "parameter", _depth: int = 0, _seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-safe view of a value, for the server's records.

    Containers are walked with a depth guard: a cyclic or absurdly deep
    parameter gives a clear InvalidArgument naming it, never RecursionError.
    Objects JSON cannot hold are shown by their type and a short repr.
    """
    if isinstance(value, _PRIMITIVES):
        if isinstance(value, float) and value != value:  # NaN
            return "NaN"
        return value
    if _depth >= MAX_DEPTH:
        raise InvalidArgument(f"{name} is nested more than {MAX_DEPTH} levels deep", field=name)
    if id(value) in _seen:
        raise InvalidArgument(f"{name} contains itself (a cycle); Weir cannot record it", field=name)
    seen = _seen | {id(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, name=name, _depth=_depth + 1, _seen=seen) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v, name=name, _depth=_depth + 1, _seen=seen) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, name=name, _depth=_depth + 1, _seen=seen)
    if isinstance(value, PurePath | uuid.UUID):
        return str(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return to_jsonable(dump(mode="json"), name=name, _depth=_depth + 1, _seen=seen)
    text = repr(value)
    return f"<{type(value).__name__}: {text[:200]}>"


def input_hash(params: Mapping[str, Any]) -> str:
    """A stable hash of call inputs (same inputs, same hash, across processes)."""
    h = hashlib.blake2b(digest_size=8)
    _feed(h, params, 0, frozenset())
    return h.hexdigest()


def _feed(h: Any, value: Any, depth: int, seen: frozenset[int]) -> None:
    if isinstance(value, _PRIMITIVES):
        h.update(f"{type(value).__name__}:{value!r};".encode())
        return
    if depth >= MAX_DEPTH:
        raise InvalidArgument(f"a task input is nested more than {MAX_DEPTH} levels deep", field="inputs")
    if id(value) in seen:
        raise InvalidArgument("a task input contains itself (a cycle)", field="inputs")
    seen = seen | {id(value)}
    if isinstance(value, Mapping):
        h.update(b"{")
        for k in sorted(value, key=repr):
            _feed(h, k, depth + 1, seen)
            _feed(h, value[k], depth + 1, seen)
        h.update(b"}")
    elif isinstance(value, list | tuple):
        h.update(b"[")
        for v in value:
            _feed(h, v, depth + 1, seen)
        h.update(b"]")
    elif isinstance(value, set | frozenset):
        h.update(b"<")
        for v in sorted(value, key=repr):
            _feed(h, v, depth + 1, seen)
        h.update(b">")
    else:
        key = getattr(value, "__weir_identity__", None)
        if key is not None:  # futures and other engine objects name themselves
            h.update(f"@{key};".encode())
            return
        try:
            import cloudpickle

            h.update(hashlib.blake2b(cloudpickle.dumps(value), digest_size=8).digest())
        except Exception:
            # Unpicklable: fall back to the type; the occurrence counter keeps calls apart.
            h.update(f"?{type(value).__qualname__};".encode())
