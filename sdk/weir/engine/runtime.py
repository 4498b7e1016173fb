"""The per-process runtime of the engine: one private event loop on a
background thread that owns the client, the SyncRuns stream and the flow-run
heartbeats. Sync and async user code reach it the same way, so there is one
engine, not a sync copy and an async copy.

With no ``WEIR_API_ADDRESS`` the first flow call starts the embedded stack
here (no-server mode), on the home's SQLite files and an embedded NATS, and
stops it at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from weir._aio import cancel_leftover_tasks
from weir.client import AsyncWeirClient
from weir.engine.sync_stream import RunSync
from weir.settings import Settings, get_settings

T = TypeVar("T")
log = logging.getLogger("weir.engine")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="weir-runtime", daemon=True)
        self._thread.start()
        self._embedded: Any = None
        address = settings.api_address
        if not address:
            from weir.engine._embedded import start_embedded

            self._embedded = start_embedded(settings)
            address = self._embedded.stack.address
        self.address = address
        self.client: AsyncWeirClient = self.call(self._make_client(address))
        self.sync = RunSync(self.loop, self._open_sync_stream)
        self._heartbeats: dict[str, asyncio.Task[None]] = {}
        #: Flow runs a heartbeat answer said were asked to cancel.
        self.cancel_requested: set[str] = set()
        self._on_cancel: dict[str, Callable[[], None]] = {}
        # `print` in a run with log_prints=True goes to the run logger; elsewhere it is untouched.
        from weir.logging import install_print_hook

        install_print_hook()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _make_client(self, address: str) -> AsyncWeirClient:
        s = self.settings
        return AsyncWeirClient(
            address,
            api_key=s.api_key,
            timeout=s.request_timeout_seconds,
            read_retries=s.read_retries,
            service_addresses=s.service_addresses,
        )

    def _open_sync_stream(self, requests: Any) -> Any:
        stub = self.client._orchestration_stub
        return stub.SyncRuns(requests, metadata=self.client._transport.metadata)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the runtime loop and wait for it (from any other thread)."""
        return self.submit(coro).result()

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """The same from a coroutine on another loop (async flows)."""
        return await asyncio.wrap_future(self.submit(coro))

    # ---------------------------------------------------------------- heartbeats

    def start_heartbeat(self, flow_run_id: str, on_cancel: Callable[[], None] | None = None) -> None:
        """Heartbeat the run; ``on_cancel`` is called (once, on the runtime loop) when the server
        answers that the run was asked to cancel (CANCELLING)."""
        if on_cancel is not None:
            self._on_cancel[flow_run_id] = on_cancel
        self.loop.call_soon_threadsafe(self._start_heartbeat, flow_run_id)

    def stop_heartbeat(self, flow_run_id: str) -> None:
        self._on_cancel.pop(flow_run_id, None)
        self.loop.call_soon_threadsafe(self._stop_heartbeat, flow_run_id)

    def is_cancel_requested(self, flow_run_id: str) -> bool:
        return flow_run_id in self.cancel_requested

    def _start_heartbeat(self, flow_run_id: str) -> None:
        self._heartbeats[flow_run_id] = self.loop.create_task(self._beat(flow_run_id))

    def _stop_heartbeat(self, flow_run_id: str) -> None:
        task = self._heartbeats.pop(flow_run_id, None)
        if task is not None:
            task.cancel()  # no waiting on a sleep: the flow returns at once

    async def _beat(self, flow_run_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_seconds)
            try:
                if await self.client.heartbeat_flow_run(flow_run_id):
                    self.cancel_requested.add(flow_run_id)
                    callback = self._on_cancel.pop(flow_run_id, None)
                    if callback is not None:
                        callback()
            except Exception as exc:  # the next beat tries again; the server's timeout is generous
                log.debug("heartbeat for %s failed: %s", flow_run_id, exc)

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        try:
            self.sync.flush().result(timeout=10)
        except Exception as exc:
            log.warning("task-run records not confirmed at exit: %s", exc)
        try:
            self.call(self._aclose())
        finally:
            if self._embedded is not None:
                self._embedded.stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self.loop.close()

    async def _aclose(self) -> None:
        for task in self._heartbeats.values():
            task.cancel()
        await self.sync.close()
        await self.client.close()
        await cancel_leftover_tasks()


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process's runtime, started on first use."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = Runtime(get_settings())
                atexit.register(shutdown_runtime)
    return _runtime


def shutdown_runtime() -> None:
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close()
