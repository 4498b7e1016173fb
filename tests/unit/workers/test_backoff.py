"""Reconnect backoff: doubling from 0.1 s, capped at 5 s, jittered, reset after a healthy stream."""

from __future__ import annotations

from weir.workers.stream import Backoff


def test_doubles_up_to_the_cap() -> None:
    backoff = Backoff(first=0.1, cap=5.0, rng=lambda: 1.0)  # no jitter: the top of each range
    assert [round(backoff.next(), 3) for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_jitter_keeps_each_delay_between_half_and_all_of_it() -> None:
    low = Backoff(rng=lambda: 0.0)
    assert [round(low.next(), 3) for _ in range(3)] == [0.05, 0.1, 0.2]
    real = Backoff()
    for expected in (0.1, 0.2, 0.4, 0.8):
        assert expected / 2 <= real.next() <= expected


def test_reset_starts_over() -> None:
    backoff = Backoff(rng=lambda: 1.0)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() == 0.1


def test_many_attempts_never_overflow() -> None:
    backoff = Backoff(rng=lambda: 1.0)
    for _ in range(2000):
        delay = backoff.next()
    assert delay == 5.0
