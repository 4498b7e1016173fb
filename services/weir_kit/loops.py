"""Background loops that a service runs beside its RPCs (sweepers, schedulers, consumers)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None] | None], *, rounds: int = 20) -> None:
    """Cancel ``tasks`` and wait for them to end.

    The cancel is repeated: nats-py's fetch runs ``asyncio.wait_for``, which on
    Python 3.11 can swallow one cancellation.
    """
    pending = [t for t in tasks if t is not None and not t.done()]
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, still = await asyncio.wait(pending, timeout=0.25)
        pending = list(still)


class Foreground:
    """Work that a client is waiting for in this process: unary calls, SyncRuns batches.

    While there is some, and for ``quiet_seconds`` after the last of it ended,
    deferrable background work (the outbox relay, the events persister) holds
    off, so that in ``weir server start``, where every service shares one event
    loop, answers go out before the events they produced are relayed and
    stored. The quiet period matters for a client calling in a loop: between
    its calls nothing is in progress for a fraction of a millisecond, and a
    relay round started there would delay the next call by its whole length.
    Each wait is capped, so background work is delayed, never starved (see
    :class:`Deferral`). A counter, not an ``asyncio.Event``: it is shared by
    every loop of the process.
    """

    poll_seconds = 0.005

    def __init__(self, quiet_seconds: float = 0.005, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet_seconds = quiet_seconds
        self._clock = clock
        self._active = 0
        self._last_left = -math.inf

    @property
    def busy(self) -> bool:
        """Foreground work is in progress now."""
        return self._active > 0

    @property
    def settled(self) -> bool:
        """Nothing in progress, and nothing ended within the last ``quiet_seconds``."""
        return not self._active and self._clock() - self._last_left >= self.quiet_seconds

    def enter(self, count: int = 1) -> None:
        self._active += count

    def leave(self, count: int = 1) -> None:
        self._active = max(0, self._active - count)
        self._last_left = self._clock()

    async def yield_to(self, max_wait: float) -> float:
        """Wait until foreground work has settled, at most ``max_wait`` seconds; how long it waited."""
        if max_wait <= 0 or self.settled:
            return 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not self.settled and loop.time() - start < max_wait:  # noqa: ASYNC110 (no Event: any loop)
            await asyncio.sleep(self.poll_seconds)
        return loop.time() - start


#: This process's foreground gauge.
FOREGROUND = Foreground()


class Deferral:
    """How one background loop takes turns with the foreground.

    Before each round the loop calls :meth:`turn`, which waits for the
    foreground to settle, at most ``max_wait`` seconds. A wait that hit the
    cap means the foreground never pauses (sustained load): the loop then
    runs ``share_seconds`` of rounds without waiting, so under any load it
    keeps at least ``share / (share + max_wait)`` of the loop and its backlog
    cannot grow without bound.
    """

    def __init__(self, max_wait: float, share_seconds: float = 0.05, gauge: Foreground | None = None) -> None:
        self.max_wait = max_wait
        self.share_seconds = share_seconds
        self.gauge = gauge or FOREGROUND
        self._free_until = -math.inf

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._free_until:
            return
        waited = await self.gauge.yield_to(self.max_wait)
        if self.max_wait > 0 and waited >= self.max_wait:
            self._free_until = loop.time() + self.share_seconds


class BackgroundLoop:
    """One named task: ``start()`` once, ``stop()`` cancels it and waits. Subclasses write ``_run``."""

    loop_name = "loop"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.loop_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])

    async def _run(self) -> None:
        raise NotImplementedError
