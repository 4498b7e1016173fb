"""The one gRPC transport of the SDK: channel, metadata, retries, errors.

Every call the typed client makes goes through :class:`Transport`, so the
translation of ``grpc.aio.AioRpcError`` into the ``weir.errors`` tree, the
API-key metadata and the retry policy each exist exactly once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from grpc import aio

from weir.errors import FIELD_METADATA_KEY, WeirError, error_for_status

__all__ = ["CHANNEL_OPTIONS", "MAX_MESSAGE_BYTES", "Transport", "translate_error"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Detect a dead connection under a long-lived stream (subscribe_events).
    # Five minutes matches gRPC servers' default minimum ping interval, so a
    # server with stock settings never answers our pings with GOAWAY.
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
)

# Backoff for retried reads: 0.1 s, 0.2 s, 0.4 s ... capped, with jitter so
# many clients that lost the same server do not come back in lockstep.
_BACKOFF_FIRST = 0.1
_BACKOFF_CAP = 2.0


def translate_error(error: grpc.RpcError, *, address: str | None = None) -> WeirError:
    """The ``weir.errors`` exception for a failed RPC.

    The offending request field, when the server names one in the trailing
    metadata key ``weir-field``, becomes ``error.field``.
    """
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else None) or ""
    field = None
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == FIELD_METADATA_KEY:
            field = value.decode() if isinstance(value, bytes) else value
    if code == grpc.StatusCode.UNAVAILABLE and address:
        message = f"cannot reach the Weir server at {address} ({message or 'unavailable'})"
    elif code == grpc.StatusCode.UNIMPLEMENTED and address:
        # gRPC's own text ("Method not found!") does not say where we asked.
        message = f"the server at {address} does not serve this call ({message or 'unimplemented'})"
    return error_for_status(code, message, field=field)


class Transport:
    """A lazily opened ``grpc.aio`` channel plus how to call through it.

    The channel is opened on first use, inside the running event loop, because
    a ``grpc.aio`` channel belongs to the loop it was created on; used from
    another loop later (a test client, ``asyncio.run`` twice), it opens a
    fresh channel for that loop instead of failing.
    """

    def __init__(
        self,
        address: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        read_retries: int = 3,
        service_addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.address = address
        #: Per-service overrides (distributed mode: ``{"events": "events:4274"}``).
        self.service_addresses = dict(service_addresses or {})
        self.timeout = timeout
        self.read_retries = read_retries
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._channels: dict[str, aio.Channel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def channel(self) -> aio.Channel:
        """The channel to the default address."""
        return self._channel_to(self.address)

    def channel_for(self, service: str) -> aio.Channel:
        """The channel for a service by short name (``orchestration``, ``events``...)."""
        return self._channel_to(self.service_addresses.get(service, self.address))

    def _channel_to(self, address: str) -> aio.Channel:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._channels = {}
            self._loop = loop
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        return channel

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        if self._loop is asyncio.get_running_loop():
            for channel in channels.values():
                await channel.close()

    async def unary(
        self,
        method: Callable[..., Awaitable[Resp]],
        request: Any,
        *,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> Resp:
        """Call a unary RPC, translating failures into ``weir.errors``.

        ``idempotent=True`` (reads) retries UNAVAILABLE a bounded number of
        times; writes are never retried here because the caller knows whether
        they carry an idempotency key.
        """
        attempt = 0
        while True:
            try:
                return await method(request, timeout=deadline or self.timeout, metadata=self.metadata)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if idempotent and code == grpc.StatusCode.UNAVAILABLE and attempt < self.read_retries:
                    delay = min(_BACKOFF_FIRST * 2**attempt, _BACKOFF_CAP)
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    attempt += 1
                    continue
                raise translate_error(exc, address=self.address) from None

    async def server_stream(self, method: Callable[..., Any], request: Any) -> AsyncIterator[Any]:
        """Iterate a server-streaming RPC (no deadline); cancels it on exit."""
        call = method(request, metadata=self.metadata)
        try:
            async for item in call:
                yield item
        except grpc.RpcError as exc:
            raise translate_error(exc, address=self.address) from None
        finally:
            call.cancel()
