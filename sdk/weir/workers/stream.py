"""The worker's one bidi stream, ``WorkerService.Connect``, kept open.

:class:`WorkerStream` connects, sends the handler's ``Hello``, waits for the
``Welcome``, then sends heartbeats at the interval the server chose and hands
every other server message to the handler. When the stream breaks, or the
server is down, it reconnects with exponential backoff and jitter; the next
Hello carries the handler's state at that moment (free slots), and the
handler sends its first heartbeat (active runs) as soon as it is welcomed, so
runs that kept going while the worker was away are never given to another.

Messages sent while disconnected are dropped, on purpose: credits are
re-based by the next Hello, and acks and active runs by the next heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import grpc
from grpc import aio

from weir.client._grpc import translate_error
from weir.errors import WeirError
from weir.v1 import deployments_pb2 as pb

__all__ = ["Backoff", "StreamHandler", "WorkerStream"]

log = logging.getLogger("weir.worker")

#: Failures that no retry fixes while the worker has never been welcomed: a wrong
#: address, key or pool is reported at once instead of being retried forever.
_FATAL_AT_START = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


#: A stream that stayed up this long was healthy: the next reconnect starts from the first delay.
HEALTHY_SECONDS = 2.0


class Backoff:
    """Delays 0.1 s, 0.2 s, 0.4 s ... up to ``cap``, each scaled by a random 0.5-1.0.

    The jitter keeps many workers that lost the same server from coming
    back in lockstep; :meth:`reset` starts over after a healthy connection.
    """

    def __init__(self, first: float = 0.1, cap: float = 5.0, rng: Callable[[], float] = random.random) -> None:
        self.first = first
        self.cap = cap
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2 ** min(self._attempt, 32))
        self._attempt += 1
        return delay * (0.5 + self._rng() / 2)

    def reset(self) -> None:
        self._attempt = 0


class StreamHandler(Protocol):
    """What the stream asks of the worker."""

    def hello(self) -> pb.Hello: ...
    def heartbeat(self) -> pb.Heartbeat: ...
    def on_welcome(self, welcome: pb.Welcome) -> None: ...
    def on_message(self, message: pb.ServerMessage) -> None: ...


class WorkerStream:
    """Keeps one ``Connect`` stream open for ``handler`` until :meth:`close`.

    ``open_call(requests)`` starts the RPC (``stub.Connect(requests, metadata=...)``).
    """

    def __init__(
        self,
        open_call: Callable[[AsyncIterator[pb.WorkerMessage]], Any],
        handler: StreamHandler,
        *,
        address: str,
        backoff: Backoff | None = None,
    ) -> None:
        self._open_call = open_call
        self._handler = handler
        self._address = address
        self._backoff = backoff or Backoff()
        self._outbox: asyncio.Queue[pb.WorkerMessage | None] | None = None
        self._call: Any = None
        self._welcomed_once = False
        self._welcomed_at: float | None = None
        self._dropped_by_us = False
        self._closing = False
        #: Set while a Welcome'd stream is open.
        self.connected = asyncio.Event()

    def send(self, message: pb.WorkerMessage) -> bool:
        """Queue a message on the open stream; False (dropped) while disconnected."""
        if self._outbox is None or not self.connected.is_set():
            return False
        self._outbox.put_nowait(message)
        return True

    def reconnect(self) -> None:
        """Drop the current stream; the loop opens a new one (with a fresh Hello) at once."""
        if self._call is not None:
            self._dropped_by_us = True
            self._call.cancel()

    def close(self) -> None:
        """Leave: end the stream and stop reconnecting (:meth:`run` returns)."""
        self._closing = True
        self.reconnect()

    async def run(self) -> None:
        """Connect and reconnect until :meth:`close`.

        Before the first Welcome, a failure no retry can fix (bad pool, key,
        request, or a server without the worker service) raises its
        ``weir.errors`` exception; afterwards everything is retried.
        """
        loop = asyncio.get_running_loop()
        while not self._closing:
            self._welcomed_at = None
            self._dropped_by_us = False
            problem: str | None = None
            try:
                problem = await self._connect_once()
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if not self._welcomed_once and code in _FATAL_AT_START and not self._dropped_by_us:
                    raise translate_error(exc, address=self._address) from None
                problem = _describe(exc, self._address)
            except _StreamEnded as exc:
                problem = str(exc)
            finally:
                self.connected.clear()
                self._outbox = None
                self._call = None
            if self._closing:
                return
            if self._welcomed_at is not None and loop.time() - self._welcomed_at >= HEALTHY_SECONDS:
                self._backoff.reset()
            if self._dropped_by_us:
                continue  # our own reconnect(): the new Hello goes out at once
            delay = self._backoff.next()
            log.warning("worker stream: %s; reconnecting in %.2fs", problem or "closed", delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> str | None:
        """One stream, from Hello to its end; returns why it ended (None: we ended it)."""
        outbox: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()
        outbox.put_nowait(pb.WorkerMessage(hello=self._handler.hello()))
        self._outbox = outbox
        call = self._call = self._open_call(_drain(outbox))
        first = await self._read(call)
        if first is None:
            return None
        if first is aio.EOF:
            raise _StreamEnded("the server closed the stream before its Welcome")
        if first.WhichOneof("body") != "welcome":
            raise _StreamEnded(f"expected Welcome, got {first.WhichOneof('body')}")
        welcome = first.welcome
        self._welcomed_once = True
        self._welcomed_at = asyncio.get_running_loop().time()
        self.connected.set()
        log.info("connected as worker %s", welcome.worker_id)
        self._handler.on_welcome(welcome)
        beats = asyncio.create_task(self._heartbeats(welcome.heartbeat_interval_seconds or 5.0))
        try:
            while True:
                message = await self._read(call)
                if message is None:
                    return None
                if message is aio.EOF:
                    return "the server ended the stream"
                if message.WhichOneof("body") == "reconnect":
                    # Not counted as our own drop: a server shedding load should not be hit at once by all.
                    call.cancel()
                    return f"the server asked to reconnect ({message.reconnect.reason or 'no reason given'})"
                self._handler.on_message(message)
        finally:
            beats.cancel()

    async def _read(self, call: Any) -> Any:
        """The next message, EOF, or None once we cancelled the call ourselves."""
        try:
            return await call.read()
        except asyncio.CancelledError:
            # grpc.aio raises CancelledError from read() after call.cancel(); only a cancel
            # of our own task (worker shutdown) must propagate.
            task = asyncio.current_task()
            if self._dropped_by_us and task is not None and not task.cancelling():
                return None
            raise

    async def _heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.send(pb.WorkerMessage(heartbeat=self._handler.heartbeat()))


class _StreamEnded(WeirError):
    """The stream closed or misbehaved before the worker was welcomed."""


async def _drain(outbox: asyncio.Queue[pb.WorkerMessage | None]) -> AsyncIterator[pb.WorkerMessage]:
    while True:
        message = await outbox.get()
        if message is None:
            return
        yield message


def _describe(exc: grpc.RpcError, address: str) -> str:
    try:
        return str(translate_error(exc, address=address))
    except Exception:  # never let a logging detail break the reconnect loop
        return repr(exc)
