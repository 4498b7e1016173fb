"""The outbox relay at rest: it reads the outbox when a commit wakes it or its poll interval
passes, not after each of its own rounds."""

from __future__ import annotations

import asyncio


async def test_an_idle_relay_does_not_spin(events_stack) -> None:
    relay, interval = events_stack.relay, events_stack.settings.outbox_poll_interval_seconds
    await asyncio.sleep(interval)  # past the rounds of the stack's start
    before = relay.rounds
    await asyncio.sleep(10 * interval)
    # One round per poll interval, give or take; a relay woken by its own commits runs one
    # every ~10 ms (its coalescing pause) and would show fifty or more here. (A slow machine
    # only lowers the count.)
    assert relay.rounds - before <= 13
