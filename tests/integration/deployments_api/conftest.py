"""The typed client, CLI and gateway against the suite's stack (both backends).

Tests isolate themselves by unique names: every pool, flow and deployment
they create is new.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def client(stack: Any) -> Iterator[Any]:
    """A blocking client of the stack."""
    from weir.client import WeirClient

    with WeirClient(stack.address) as c:
        yield c


@pytest.fixture
def pool(client: Any) -> str:
    """A fresh work pool (with its default queue)."""
    name = unique("pool")
    client.upsert_work_pool(name, description="made by a test")
    return name
