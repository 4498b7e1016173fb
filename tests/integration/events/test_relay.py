"""The outbox relay at rest: it reads the outbox when a commit wakes it or its poll interval
passes, not after each of its own rounds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from tests.integration.events.helpers import eventually, make_event
from weir_events.models import events


async def test_an_idle_relay_does_not_spin(events_stack) -> None:
    relay, interval = events_stack.relay, events_stack.settings.outbox_poll_interval_seconds
    await asyncio.sleep(interval)  # past the rounds of the stack's start
    before = relay.rounds
    await asyncio.sleep(10 * interval)
    # One round per poll interval, give or take; a relay woken by its own commits runs one
    # every ~10 ms (its coalescing pause) and would show fifty or more here. (A slow machine
    # only lowers the count.)
    assert relay.rounds - before <= 13


async def test_an_event_too_large_for_nats_does_not_hold_up_the_rest(events_stack) -> None:
    big = make_event("weir.test.big", payload={"message": "x" * 2_000_000})  # NATS takes 1 MB
    huge_related = [
        {"weir.resource.id": f"weir.task-run.{i:08}", "weir.resource.role": "task-run"} for i in range(40_000)
    ]
    hopeless = make_event("weir.test.hopeless", related=huge_related)  # too large even without its payload
    after = make_event("weir.test.after")
    async with events_stack.db.transaction() as session:
        await events_stack.outbox.add(session, [big, hopeless, after])

    async def stored() -> list[Any]:
        async with events_stack.db.read() as session:
            query = select(events.c.id, events.c.payload).where(events.c.event.like("weir.test.%"))
            return list((await session.execute(query)).all())

    rows = await eventually(lambda: _both(stored), 20, "the events around the large ones stored")
    payloads = {row.id: row.payload for row in rows}
    assert set(payloads) == {big.id, after.id}
    assert payloads[big.id] == {"weir.truncated": True, "weir.original_bytes": len(big.SerializeToString())}
    assert await events_stack.outbox.pending() == 0
    assert (events_stack.relay.truncated, events_stack.relay.dropped) == (1, 1)


async def _both(stored: Callable[[], Awaitable[list[Any]]]) -> list[Any] | None:
    rows = await stored()
    return rows if len(rows) >= 2 else None
