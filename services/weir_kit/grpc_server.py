"""The gRPC server every Weir process uses.

One ``grpc.aio`` server carries any number of services, the standard health
service (a status per service name), reflection, and one interceptor that:
checks the API key when one is configured, maps the ``WeirError`` tree to
status codes (with the offending field in trailing metadata ``weir-field``),
turns any other exception into INTERNAL with a logged traceback, and logs
each request with its duration.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from weir.errors import FIELD_METADATA_KEY, Unauthenticated, WeirError
from weir_kit.db import connection_lost, refused_value
from weir_kit.loops import FOREGROUND
from weir_kit.settings import KitSettings

log = logging.getLogger("weir.grpc")

HEALTH_SERVICE = "grpc.health.v1.Health"
_UNAUTHENTICATED_OK = {f"/{HEALTH_SERVICE}/Check", f"/{HEALTH_SERVICE}/Watch"}


async def _abort(context: grpc.aio.ServicerContext, exc: WeirError) -> None:
    if exc.field:
        context.set_trailing_metadata(((FIELD_METADATA_KEY, exc.field),))
    await context.abort(exc.status, exc.message)


def unhandled_status(method: str, exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status for an exception that is not a ``WeirError``: UNAVAILABLE when the database
    could not be reached or dropped the connection (the next call may well succeed, on a new
    connection); INVALID_ARGUMENT when it refused a value the request carried (too long for its
    column, a NUL); INTERNAL otherwise (a bug: logged with its traceback)."""
    if connection_lost(exc):
        log.warning("%s: the database is unavailable: %s: %s", method, type(exc).__name__, exc)
        return grpc.StatusCode.UNAVAILABLE, f"the database is unavailable ({type(exc).__name__}); try again"
    refused = refused_value(exc)
    if refused is not None:
        # A value no check caught before the database: the caller's to fix, and ours to check.
        log.warning("%s: the database refused a value of the request: %s", method, refused)
        return grpc.StatusCode.INVALID_ARGUMENT, f"a value in the request cannot be stored: {refused}"
    log.exception("unhandled error in %s", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(exc).__name__}"


async def _abort_unhandled(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    await context.abort(*unhandled_status(method, exc))


def _is_internal_abort(exc: BaseException) -> bool:
    # context.abort() raises this to unwind; it must pass through untouched.
    return type(exc).__name__ == "AbortError"


class WeirInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, api_key: str | None) -> None:
        self._api_key = api_key
        # Wrapped handlers by (method, denied): building one costs more than the lookup, on every call.
        self._wrapped: dict[tuple[str, bool], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        denied = (
            self._api_key is not None
            and method not in _UNAUTHENTICATED_OK
            and not self._authorized(handler_call_details.invocation_metadata)
        )
        cached = self._wrapped.get((method, denied))
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[(method, denied)] = (handler, _wrap(handler, method, denied))
        return cached[1]

    def _authorized(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        return any(key == "authorization" and value == f"Bearer {self._api_key}" for key, value in metadata or ())


def _wrap(handler: grpc.RpcMethodHandler, method: str, denied: bool) -> grpc.RpcMethodHandler:
    def unary(behavior: Any) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            FOREGROUND.enter()  # a client waits on this call: background loops hold off meanwhile
            try:
                if denied:
                    raise Unauthenticated("missing or wrong API key (send 'authorization: Bearer <key>')")
                return await behavior(request, context)
            except WeirError as exc:
                await _abort(context, exc)
            except Exception as exc:
                if _is_internal_abort(exc):
                    raise
                await _abort_unhandled(context, method, exc)
            finally:
                FOREGROUND.leave()
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s %.2f ms", method, (time.perf_counter() - start) * 1000)

        return call

    def streaming(behavior: Any) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if denied:
                    raise Unauthenticated("missing or wrong API key (send 'authorization: Bearer <key>')")
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    # A handler that writes with context.write() (or fails before streaming).
                    await result
                    return
                async for item in result:
                    yield item
            except WeirError as exc:
                await _abort(context, exc)
            except Exception as exc:
                if _is_internal_abort(exc):
                    raise
                await _abort_unhandled(context, method, exc)

        return call

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            streaming(handler.unary_stream), handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        streaming(handler.stream_stream), handler.request_deserializer, handler.response_serializer
    )


class GrpcServer:
    """A grpc.aio server with health, reflection and the Weir interceptor."""

    def __init__(self, settings: KitSettings) -> None:
        size = settings.grpc_max_message_bytes
        self.server = grpc.aio.server(
            interceptors=[WeirInterceptor(settings.api_key)],
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names: list[str] = []
        self.address = f"{settings.grpc_host}:{settings.grpc_port}"
        self.port = 0

    def add_service_names(self, names: Sequence[str]) -> None:
        self.service_names.extend(names)

    async def start(self) -> int:
        reflection.enable_server_reflection([*self.service_names, HEALTH_SERVICE, reflection.SERVICE_NAME], self.server)
        host, _, port = self.address.rpartition(":")
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {self.address}: port in use?")
        await self.server.start()
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self.service_names:
            await self.health.set(name, status)
        await self.health.set("", status)

    async def stop(self, grace: float = 2.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)
