"""The sync shell over :class:`AsyncWeirClient`.

One private event loop runs in a daemon thread; every public method of the
async client is forwarded by one generic ``__getattr__`` (coroutines are
awaited on that loop, async iterators become sync iterators), so there is no
second hand-kept copy of the API.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

from weir.client._client import AsyncWeirClient
from weir.settings import Settings, get_settings

__all__ = ["WeirClient"]

T = TypeVar("T")


class WeirClient:
    """Blocking twin of :class:`AsyncWeirClient`, with the same methods.

    ::

        with WeirClient() as client:                 # address from WEIR_API_ADDRESS
            run = client.read_flow_run(run_id)
            for state in client.iter_states(flow_run_id=run.id):
                print(state.display_name)

    Async iterators of the async client (``iter_*``, ``subscribe_events``)
    come back as plain iterators. Safe to share between threads.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        settings: Settings | None = None,
        api_key: str | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="weir-client", daemon=True)
        self._thread.start()

        async def build() -> AsyncWeirClient:
            # Built on the private loop: a grpc.aio channel belongs to its loop.
            if address is not None:
                config = settings or get_settings()
                return AsyncWeirClient(
                    address,
                    api_key=api_key if api_key is not None else config.api_key,
                    timeout=config.request_timeout_seconds,
                    read_retries=config.read_retries,
                )
            return AsyncWeirClient.from_settings(settings or get_settings())

        try:
            self._client = self._run(build())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            raise RuntimeError("this WeirClient is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target = getattr(self._client, name)
        if not callable(target):
            return target
        return self._forward(target)

    def __dir__(self) -> list[str]:
        public = [n for n in dir(AsyncWeirClient) if not n.startswith("_")]
        return sorted(set(super().__dir__()) | set(public))

    def _forward(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            async def invoke() -> Any:
                result = method(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result

            result = self._run(invoke())
            if hasattr(result, "__anext__"):
                return self._iterate(result)
            return result

        return call

    def _iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(source.__anext__())  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None and not self._loop.is_closed():
                self._run(aclose())

    def close(self) -> None:
        """Close the channel and stop the private loop (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
