"""ProposeStates: state proposals over one stream that the client keeps open.

A unary call costs grpcio about 0.5 ms on loopback whatever it carries (a new
HTTP/2 stream with its headers and trailers, a call object on each side),
while a message on an open stream costs about 0.2 ms: on Postgres that was a
third of a state proposal's round trip. The SDK sends its proposals here.

Each request is decided by the code that serves the unary calls
(:func:`states.set_state`), in a task of its own, so a proposal that waits on
a lock does not hold up the others; a proposal waits only for the one before
it on the same run, so one run's proposals are decided in the order they
arrived. Each answer carries its request's tag and, instead of a result, the
status the unary call would have ended with: a bad request does not end the
stream. At most ``MAX_IN_FLIGHT`` requests are decided at once; beyond that
the stream is not read, and gRPC's flow control holds the client back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc

from weir.errors import InvalidArgument, WeirError
from weir.v1 import orchestration_pb2 as pb
from weir_kit.grpc_server import unhandled_status
from weir_kit.loops import FOREGROUND
from weir_kit.runtime import ServiceContext
from weir_orchestration import run_rows, states
from weir_orchestration.policy import RunKind

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64


def _error_answer(tag: int, code: grpc.StatusCode, message: str, field: str | None = None) -> pb.ProposeStatesResponse:
    error = pb.CallError(code=code.value[0], message=message, field=field or "")
    return pb.ProposeStatesResponse(tag=tag, error=error)


async def _decide(
    svc: ServiceContext, cache: run_rows.RunCache, msg: pb.ProposeStatesRequest
) -> pb.ProposeStatesResponse:
    which = msg.WhichOneof("request")
    try:
        if which == "flow_run":
            req = msg.flow_run
            result = await states.set_state(svc, RunKind.FLOW, req.flow_run_id, req.proposal, cache)
        elif which == "task_run":
            result = await states.set_state(svc, RunKind.TASK, msg.task_run.task_run_id, msg.task_run.proposal)
        else:
            raise InvalidArgument("give flow_run or task_run", field="request")
    except WeirError as exc:
        return _error_answer(msg.tag, exc.status, exc.message, exc.field)
    except Exception as exc:  # as the interceptor does for a unary call
        return _error_answer(msg.tag, *unhandled_status("ProposeStates", exc))
    return pb.ProposeStatesResponse(tag=msg.tag, result=result)


def _run_key(msg: pb.ProposeStatesRequest) -> str:
    """Which run a request is about (as sent: ordering only needs equal strings to match)."""
    if msg.HasField("flow_run"):
        return "flow:" + msg.flow_run.flow_run_id
    return "task:" + msg.task_run.task_run_id


async def propose_states(svc: ServiceContext, cache: run_rows.RunCache, context: Any) -> None:
    """Serve one ProposeStates stream (``context``: its ``grpc.aio.ServicerContext``)."""
    # Headers at once, before any request: the client waits for them before its first write,
    # so that it never writes into a stream a server without this method is ending.
    await context.send_initial_metadata(())
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    sending = asyncio.Lock()  # one message at a time on the call
    #: The newest undecided request of each run: the next one of that run waits for it.
    latest: dict[str, asyncio.Task[None]] = {}
    running: set[asyncio.Task[None]] = set()

    async def decide(msg: pb.ProposeStatesRequest, key: str, before: asyncio.Task[None] | None) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])
            answer = await _decide(svc, cache, msg)
            async with sending:
                try:
                    await context.write(answer)
                except Exception as exc:  # the stream is gone: the read loop ends it
                    log.debug("ProposeStates: an answer could not be sent: %s", exc)
        finally:
            FOREGROUND.leave()
            slots.release()
            if latest.get(key) is asyncio.current_task():
                del latest[key]

    try:
        while (msg := await context.read()) is not grpc.aio.EOF:
            await slots.acquire()
            FOREGROUND.enter()  # a client waits on it: background loops hold off meanwhile
            key = _run_key(msg)
            task = asyncio.create_task(decide(msg, key, latest.get(key)), name="propose-state")
            latest[key] = task
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
    finally:
        # The client is gone (or the stream failed): what is still being decided is abandoned,
        # as a cancelled unary call's would be.
        for task in running:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*running, return_exceptions=True)
