"""Small asyncio helpers shared by the SDK runtime and the host."""

from __future__ import annotations

import asyncio


async def cancel_leftover_tasks(seconds: float = 2.0) -> None:
    """Cancel what library code left running on this loop (e.g. a NATS subscription) before it closes."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=seconds)
