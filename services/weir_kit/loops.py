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
