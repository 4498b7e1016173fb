"""Test helpers for users' own flows.

``weir_test_harness()`` gives a block (or, through the ``weir_harness``
pytest fixture, a test session) its own temporary home and a real embedded
stack, and points the engine at it::

    from weir.testing import weir_test_harness

    def test_my_flow():
        with weir_test_harness():
            assert my_flow(3) == 4

    # or, in conftest.py:  from weir.testing import weir_harness  # noqa: F401
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["weir_harness", "weir_test_harness"]


@contextmanager
def weir_test_harness(home: str | Path | None = None) -> Iterator[Any]:
    """Run the block against a private embedded stack; yields the client settings."""
    from weir.engine._embedded import start_embedded
    from weir.engine.runtime import shutdown_runtime
    from weir.settings import Settings, get_settings

    saved = {k: os.environ.get(k) for k in ("WEIR_API_ADDRESS", "WEIR_HOME")}
    with tempfile.TemporaryDirectory(prefix="weir-test-") as tmp:
        base = Path(home) if home is not None else Path(tmp)
        shutdown_runtime()
        runner = start_embedded(Settings(home=base))
        try:
            os.environ["WEIR_API_ADDRESS"] = runner.stack.address
            os.environ["WEIR_HOME"] = str(base)
            get_settings.cache_clear()
            yield get_settings()
        finally:
            shutdown_runtime()
            runner.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()


try:
    import pytest

    @pytest.fixture(scope="session")
    def weir_harness() -> Iterator[Any]:
        """A session-wide private Weir stack for the tests that request it."""
        with weir_test_harness() as settings:
            yield settings

except ImportError:  # pytest is optional
    pass
