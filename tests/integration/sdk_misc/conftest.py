from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def engine(stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Point the engine (flows, tasks) at the session stack for one test."""
    from weir.engine.runtime import shutdown_runtime
    from weir.settings import get_settings

    shutdown_runtime()
    monkeypatch.setenv("WEIR_API_ADDRESS", stack.address)
    monkeypatch.setenv("WEIR_HOME", str(stack.settings.home))
    get_settings.cache_clear()
    yield stack
    shutdown_runtime()
    get_settings.cache_clear()
