"""State proposals over one ``ProposeStates`` stream per client and event loop.

A unary call costs grpcio about 0.5 ms on loopback whatever it carries; a
message on a stream that is already open costs about 0.2 ms. Proposals are
most of what a running flow sends (every flow run goes PENDING, RUNNING and
a final state), so the client keeps one stream open and sends them all
there, each tagged, each answered by its tag; any number may be in flight.

Failures look like the unary call's: an answer that carries an error raises
it (``weir.errors``); if the stream breaks, every proposal waiting on it
raises the stream's error (``Unavailable`` when the server went away), and
the next proposal opens a new stream. Nothing is resent here: like a unary
write, a proposal whose answer was lost is resent by the caller, with its
idempotency key (the engine does). A proposal too large for the stream, or
a server without ``ProposeStates``, goes through the unary call instead.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import grpc

from weir.client._grpc import Transport, translate_error
from weir.errors import DeadlineExceeded, Unavailable, WeirError, error_for_status
from weir.v1 import orchestration_pb2 as pb

#: A proposal larger than this goes unary: one message over the server's limit would end the
#: stream, and with it every proposal in flight on it.
STREAM_MAX_BYTES = 256 * 1024

_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

#: After a failed write, how long to wait for the stream's own status (it has normally arrived).
_ENDED_WAIT_SECONDS = 5.0
#: How long a new stream waits for the server's response headers before its first write.
_HEADERS_WAIT_SECONDS = 1.0


class _EndedBeforeWrite(Exception):
    """The server ended a new stream before anything was written on it."""


class StreamUnsupportedError(Unavailable):
    """The server has no ProposeStates (an older server): the caller uses the unary calls."""


class ProposalStream:
    def __init__(self, transport: Transport, open_call: Callable[[], Any]) -> None:
        self._transport = transport
        self._open_call = open_call
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        #: Proposals waiting for their answers, by tag, with the stream each went out on.
        self._pending: dict[int, tuple[Any, asyncio.Future[pb.ProposeStatesResponse]]] = {}
        self._tags = itertools.count(1)
        self._sending = asyncio.Lock()
        #: Set once the server answered UNIMPLEMENTED: every proposal goes unary from then on.
        self.unsupported = False

    async def propose(self, **request: Any) -> pb.ProposalResult:
        """Send one ``ProposeStatesRequest`` (``flow_run=`` or ``task_run=``) and wait for its answer."""
        tag = next(self._tags)
        future = await self._send(pb.ProposeStatesRequest(tag=tag, **request))
        try:
            async with asyncio.timeout(self._transport.timeout):
                answer = await future
        except TimeoutError:
            raise DeadlineExceeded(f"no answer to a state proposal within {self._transport.timeout:g}s") from None
        finally:
            self._pending.pop(tag, None)
        if answer.HasField("error"):
            e = answer.error
            code = _STATUS_BY_NUMBER.get(e.code, grpc.StatusCode.UNKNOWN)
            raise error_for_status(code, e.message, field=e.field or None)
        return answer.result

    async def _send(self, message: pb.ProposeStatesRequest) -> asyncio.Future[pb.ProposeStatesResponse]:
        """Write ``message`` on the open stream (opening one if needed); the future of its answer.

        The future is registered before the write: the answer can be read before the write's
        own completion is seen. A write fails when the stream has already ended (the server
        restarted while it was idle, or does not serve it): why it ended is the stream's status,
        which its reader puts in the future. Nothing went out, so a stream that merely ended is
        replaced once; one the server does not serve is not.
        """
        loop = asyncio.get_running_loop()
        async with self._sending:
            for attempt in range(2):
                fresh = self._call is None or self._reader is None
                call, reader = self._current()
                future: asyncio.Future[pb.ProposeStatesResponse] = loop.create_future()
                self._pending[message.tag] = (call, future)
                try:
                    if fresh and await _ended_at_once(call):
                        raise _EndedBeforeWrite
                    await call.write(message)
                    return future
                except (grpc.RpcError, asyncio.InvalidStateError, _EndedBeforeWrite):
                    await asyncio.wait([reader], timeout=_ENDED_WAIT_SECONDS)
                    self._drop(call)
                    self._pending.pop(message.tag, None)
                    error = future.exception() if future.done() else None
                    error = error or Unavailable(f"the proposal stream to {self._transport.address} ended")
                    if attempt or isinstance(error, StreamUnsupportedError):
                        raise error from None
        raise AssertionError("unreachable")

    def _current(self) -> tuple[Any, asyncio.Task[None]]:
        """The open stream and its reader (both new when there is none)."""
        if self._call is None or self._reader is None:
            self._call = self._open_call()
            self._reader = asyncio.create_task(self._read(self._call), name="weir-proposals")
        return self._call, self._reader

    def _drop(self, call: Any) -> None:
        if self._call is call:
            self._call = None
        call.cancel()

    def _error(self, exc: grpc.RpcError) -> WeirError:
        """The error for proposals lost with a stream that ended with ``exc``."""
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            self.unsupported = True
            return StreamUnsupportedError("the server has no ProposeStates")
        return translate_error(exc, address=self._transport.address)

    async def _read(self, call: Any) -> None:
        error: WeirError | None = None
        try:
            while (answer := await call.read()) is not grpc.aio.EOF:
                pending = self._pending.get(answer.tag)
                if pending is not None and not pending[1].done():
                    pending[1].set_result(answer)
        except grpc.RpcError as exc:
            error = self._error(exc)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # close()
            # grpc.aio raises this for a call cancelled on this side (_drop): the stream is over.
        finally:
            self._drop(call)
            error = error or Unavailable(f"the server at {self._transport.address} ended the proposal stream")
            # The proposals sent on this stream have lost their answers.
            for sent_on, future in list(self._pending.values()):
                if sent_on is call and not future.done():
                    future.set_exception(error)

    async def close(self) -> None:
        call, reader = self._call, self._reader
        self._call = self._reader = None
        if call is not None:
            call.cancel()
        if reader is not None and reader.get_loop() is asyncio.get_running_loop():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def _ended_at_once(call: Any) -> bool:
    """Whether the server ended a new stream as soon as it saw it (UNIMPLEMENTED, or a refused
    API key), found by waiting for its response headers, at most ``_HEADERS_WAIT_SECONDS``.

    ProposeStates sends its headers as soon as it takes a stream, so the wait costs one round
    trip per stream, not per proposal. A write that races a server's UNIMPLEMENTED can leave
    grpc's status for the call at INTERNAL ("Internal error from Core") instead: one time in
    six on loopback, which turned a server without the stream into a failed proposal instead
    of one sent unary. A server that sends no early headers only delays the first write.
    """
    headers = asyncio.ensure_future(call.initial_metadata())
    headers.add_done_callback(_observe)
    await asyncio.wait([headers], timeout=_HEADERS_WAIT_SECONDS)
    return bool(call.done())


def _observe(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the stream's reader reports how it ended
