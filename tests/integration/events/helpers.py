"""Small helpers of the events integration tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from weir.v1 import common_pb2
from weir_kit.events import new_event, resource


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout}s (last: {last!r})")
        await asyncio.sleep(0.02)


def make_event(
    name: str = "weir.flow-run.Completed",
    resource_id: str | None = None,
    *,
    occurred: datetime | None = None,
    related: list[dict[str, str]] | None = None,
    payload: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> common_pb2.Event:
    return new_event(
        name,
        resource(resource_id or f"weir.flow-run.{uuid.uuid4()}"),
        occurred=occurred or datetime.now(UTC),
        related=related or [],
        payload=payload,
        event_id=event_id,
    )
