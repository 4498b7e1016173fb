"""Point the engine at the suite's stack, one backend at a time.

The engine reads its settings once (``get_settings`` is cached) and keeps one
process-wide runtime; each test module gets a fresh runtime aimed at the
current backend's stack, and leaves none behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def _reset() -> None:
    from weir.engine import runtime
    from weir.settings import get_settings

    runtime.shutdown_runtime()  # closes the runtime's loop too
    get_settings.cache_clear()


@pytest.fixture(scope="module", autouse=True)
def engine(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The engine's runtime, talking to ``stack`` over gRPC; results under a private home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WEIR_API_ADDRESS", stack.address)
    mp.setenv("WEIR_HOME", str(tmp_path_factory.mktemp("engine-home")))
    _reset()
    from weir.engine.runtime import get_runtime

    try:
        yield get_runtime()
    finally:
        _reset()
        mp.undo()


@pytest.fixture(scope="module")
def client(stack: Any) -> Iterator[Any]:
    """A blocking client on the same stack, to check what the engine wrote."""
    from weir.client import WeirClient

    with WeirClient(stack.address) as c:
        yield c
