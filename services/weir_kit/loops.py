"""Background loops that a service runs beside its RPCs (sweepers, schedulers, consumers)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


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
    """Hot-path work that a client is waiting for in this process (SyncRuns batches).

    While there is some, deferrable background work (the outbox relay, the
    events persister) holds off, so that in ``weir server start``, where every
    service shares one event loop, a flow's task runs are committed before the
    events they produced are relayed and stored. Each wait is capped, so the
    background work is delayed, never starved. A counter, not an
    ``asyncio.Event``: it is shared by every loop of the process.
    """

    poll_seconds = 0.005

    def __init__(self) -> None:
        self._active = 0

    @property
    def busy(self) -> bool:
        return self._active > 0

    def enter(self, count: int = 1) -> None:
        self._active += count

    def leave(self, count: int = 1) -> None:
        self._active = max(0, self._active - count)

    async def yield_to(self, max_wait: float) -> float:
        """Wait while foreground work is in progress, at most ``max_wait`` seconds; how long it waited."""
        if not self._active or max_wait <= 0:
            return 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while self._active and loop.time() - start < max_wait:  # noqa: ASYNC110 (no Event: any loop)
            await asyncio.sleep(self.poll_seconds)
        return loop.time() - start


#: This process's foreground gauge.
FOREGROUND = Foreground()


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
