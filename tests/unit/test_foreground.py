"""weir_kit.loops.Foreground: background loops wait for hot-path work, for a bounded time."""

from __future__ import annotations

import asyncio

from weir_kit.loops import Foreground


async def test_nothing_in_progress_means_no_wait() -> None:
    assert await Foreground().yield_to(5.0) == 0.0


async def test_waits_until_the_work_is_done() -> None:
    gauge = Foreground()
    gauge.enter(2)

    async def finish() -> None:
        await asyncio.sleep(0.02)
        gauge.leave()
        await asyncio.sleep(0.02)
        gauge.leave()

    done = asyncio.ensure_future(finish())
    waited = await gauge.yield_to(30.0)
    assert done.done() and not gauge.busy
    assert 0.04 <= waited < 30.0


async def test_the_wait_is_capped_so_background_work_never_starves() -> None:
    gauge = Foreground()
    gauge.enter()
    waited = await gauge.yield_to(0.05)
    assert waited >= 0.05 and gauge.busy


def test_leaving_more_than_entered_does_not_go_negative() -> None:
    gauge = Foreground()
    gauge.leave(3)
    gauge.enter()
    assert gauge.busy
    gauge.leave()
    assert not gauge.busy
