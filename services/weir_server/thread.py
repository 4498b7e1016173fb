"""A :class:`Stack` on its own event loop in a background thread.

Used by no-server mode, ``weir.testing`` and the test suite: synchronous
code gets a real stack on real ports without giving up its own thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from weir._aio import cancel_leftover_tasks
from weir_server.stack import Stack

T = TypeVar("T")


class StackThread:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="weir-stack", daemon=True)

    def start(self, timeout: float = 60.0) -> Stack:
        self._thread.start()
        self.run(self.stack.start(), timeout=timeout)
        return self.stack

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the stack's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self.stack.stop(), timeout=timeout)
            self.run(cancel_leftover_tasks(), timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
            self.loop.close()
