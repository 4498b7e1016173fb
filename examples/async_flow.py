"""Async flows and tasks run on the flow's own event loop."""

import asyncio

from weir import flow, task


@task
async def fetch(i: int) -> int:
    await asyncio.sleep(0.01)
    return i * 2


@flow
async def gather_all(n: int) -> int:
    results = await asyncio.gather(*(fetch(i) for i in range(n)))
    return sum(results)


if __name__ == "__main__":
    print(asyncio.run(gather_all(10)))
