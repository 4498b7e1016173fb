"""weir_kit.loops.Foreground: background loops wait for hot-path work, for a bounded time."""

from __future__ import annotations

import asyncio

from weir_kit.loops import Deferral, Foreground


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


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_work_that_just_ended_keeps_the_gauge_unsettled_for_the_quiet_period() -> None:
    clock = FakeClock()
    gauge = Foreground(quiet_seconds=0.005, clock=clock)
    assert gauge.settled
    gauge.enter()
    assert gauge.busy and not gauge.settled
    gauge.leave()
    assert not gauge.busy and not gauge.settled  # a client calling in a loop is about to call again
    clock.now += 0.004
    assert not gauge.settled
    clock.now += 0.002
    assert gauge.settled


async def test_a_deferral_that_hit_its_cap_runs_its_share_without_waiting() -> None:
    gauge = Foreground()
    gauge.enter()  # foreground that never pauses
    deferral = Deferral(max_wait=0.03, share_seconds=60.0, gauge=gauge)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await deferral.turn()
    assert loop.time() - start >= 0.03  # waited for the cap ...
    start = loop.time()
    for _ in range(5):
        await deferral.turn()
    assert loop.time() - start < 0.03  # ... then takes its share: no more waits


async def test_a_deferral_waits_every_round_while_the_foreground_settles_in_time() -> None:
    gauge = Foreground(quiet_seconds=0.0)
    deferral = Deferral(max_wait=30.0, share_seconds=60.0, gauge=gauge)
    for _ in range(2):
        gauge.enter()
        asyncio.get_running_loop().call_later(0.02, gauge.leave)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await deferral.turn()
        assert 0.02 <= loop.time() - start < 30.0


async def test_a_unary_call_is_foreground_work_while_it_runs() -> None:
    import grpc

    from weir_kit.grpc_server import _wrap
    from weir_kit.loops import FOREGROUND

    seen: list[bool] = []

    async def behavior(request: object, context: object) -> str:
        seen.append(FOREGROUND.busy)
        return "answer"

    wrapped = _wrap(grpc.unary_unary_rpc_method_handler(behavior), "/weir.v1.Test/Call", denied=False)
    assert not FOREGROUND.busy
    assert await wrapped.unary_unary("request", None) == "answer"
    assert seen == [True]
    assert not FOREGROUND.busy
